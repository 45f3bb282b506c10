// Minimal Cortex-M startup for the project's bare-metal apps: vector table,
// FPU enable, .data copy, .bss clear, C++ constructors, main(). Symbols come
// from sections.ld; faults end the program through the platform layer.
#include <stdint.h>

#include "deploy/make/platform/platform.h"

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern void __libc_init_array(void);
extern int main(void);

void Reset_Handler(void) {
  *(volatile uint32_t*)0xE000ED88u |= 0xFu << 20;  // CPACR: full access to CP10/CP11 (the FPU)
  __asm__ volatile("dsb\n isb");
  const uint32_t* src = &__data_load;
  for (uint32_t* dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
  __libc_init_array();
  mcuf_platform_exit(main());
}

static void Fault_Handler(void) {
  mcuf_platform_write("fault: the program stopped (hard/memory/bus/usage fault)\n");
  mcuf_platform_exit(1);
}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), Reset_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,  // NMI..UsageFault
    0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,  // SVC, DebugMon, PendSV, SysTick
};

// What crti/crtbegin would provide (the apps link with -nostartfiles):
// newlib's __libc_init_array calls _init, and C++ static objects register
// their (never run) destructors against __dso_handle.
void _init(void) {}
void* __dso_handle = 0;
