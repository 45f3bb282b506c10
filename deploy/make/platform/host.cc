#include <cstdio>
#include <cstdlib>

#include "deploy/make/platform/platform.h"

extern "C" {
void mcuf_platform_init(void) {}  // TFLM's host DebugLog already writes to stderr
void mcuf_platform_write(const char* line) { std::fputs(line, stdout); }
int mcuf_platform_has_cycles(void) { return 0; }
uint32_t mcuf_platform_cycles(void) { return 0; }
void mcuf_platform_exit(int status) {
  std::fflush(stdout);
  std::exit(status);
}
}
