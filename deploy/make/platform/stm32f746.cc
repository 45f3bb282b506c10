// STM32F746 (Cortex-M7): text over ITM/SWO (stimulus port 0, read it with the
// ST-LINK's SWO viewer), cycles from the DWT cycle counter, caches on.
#include CMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "deploy/make/platform/platform.h"

extern "C" {
void mcuf_platform_init(void) {
  SCB_EnableICache();
  SCB_EnableDCache();
  DCB->DEMCR |= DCB_DEMCR_TRCENA_Msk;
  DWT->LAR = 0xC5ACCE55;
  DWT->CYCCNT = 0;
  DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
  RegisterDebugLogCallback(mcuf_platform_write);
}
void mcuf_platform_write(const char* line) {
  for (; *line; ++line) ITM_SendChar(static_cast<uint32_t>(*line));
}
int mcuf_platform_has_cycles(void) { return 1; }
uint32_t mcuf_platform_cycles(void) { return DWT->CYCCNT; }
void mcuf_platform_exit(int status) {
  (void)status;
  for (;;) __WFI();
}
}
