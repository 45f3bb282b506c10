// Minimal Arduino.h stand-in: enough of the Arduino core API to compile a
// generated library and its example for Cortex-M7 without an Arduino core.
#ifndef MCUFORMER_ARDUINO_SHIM_H_
#define MCUFORMER_ARDUINO_SHIM_H_

#include <stddef.h>
#include <stdint.h>

class HardwareSerialShim {
 public:
  void begin(unsigned long) {}
  size_t print(const char*) { return 0; }
  size_t print(int) { return 0; }
  size_t print(unsigned long) { return 0; }
  size_t println(const char*) { return 0; }
  size_t println(int) { return 0; }
  size_t println(unsigned long) { return 0; }
};

extern HardwareSerialShim Serial;
void delay(unsigned long ms);

#endif  // MCUFORMER_ARDUINO_SHIM_H_
