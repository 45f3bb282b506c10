// What an app needs from the machine it runs on: one output line, a cycle
// counter, and a way to stop. One implementation per platform:
// host.cc (stdout), semihosting.cc (QEMU), stm32f746.cc (ITM/SWO + DWT).
#ifndef MCUFORMER_PLATFORM_H_
#define MCUFORMER_PLATFORM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void mcuf_platform_init(void);               // also routes TFLM's DebugLog here
void mcuf_platform_write(const char* line);  // writes `line` as given
int mcuf_platform_has_cycles(void);          // 1 where mcuf_platform_cycles() counts
uint32_t mcuf_platform_cycles(void);
void mcuf_platform_exit(int status) __attribute__((noreturn));

// Empty, never inlined: QEMU's instruction counter (deploy/qemu_plugin)
// counts the instructions executed between the calls to a begin and its end:
// around Invoke(), and around the model's CRC-32 check at boot.
void mcuf_invoke_begin(void);
void mcuf_invoke_end(void);
void mcuf_model_check_begin(void);
void mcuf_model_check_end(void);

#ifdef __cplusplus
}
#endif

#endif  // MCUFORMER_PLATFORM_H_
