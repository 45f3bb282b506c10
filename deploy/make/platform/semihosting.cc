// QEMU (and any debugger): output and exit through ARM semihosting calls.
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "deploy/make/platform/platform.h"

namespace {

constexpr int kSysWrite0 = 0x04;
constexpr int kSysExit = 0x18;
constexpr int kApplicationExit = 0x20026;   // ADP_Stopped_ApplicationExit: status 0
constexpr int kRunTimeError = 0x20023;      // ADP_Stopped_RunTimeErrorUnknown: status 1

int Semihost(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

}  // namespace

extern "C" {
void mcuf_platform_init(void) { RegisterDebugLogCallback(mcuf_platform_write); }
void mcuf_platform_write(const char* line) { Semihost(kSysWrite0, line); }
int mcuf_platform_has_cycles(void) { return 0; }  // QEMU models no cycle counter
uint32_t mcuf_platform_cycles(void) { return 0; }
void mcuf_platform_exit(int status) {
  // AArch32 semihosting passes the reason itself in r1, not a pointer.
  Semihost(kSysExit, reinterpret_cast<const void*>(status == 0 ? kApplicationExit : kRunTimeError));
  for (;;) {
  }
}
}
