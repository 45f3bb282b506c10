// Minimal Arduino.h stand-in: enough of the Arduino core API to compile a
// generated library and its example sketch without an Arduino core, and to run
// the sketch on the project's platform layer (arduino_main.cpp).
#ifndef MCUFORMER_ARDUINO_SHIM_H_
#define MCUFORMER_ARDUINO_SHIM_H_

#include <stddef.h>
#include <stdint.h>

class HardwareSerialShim {
 public:
  void begin(unsigned long) {}
  size_t print(const char* text);
  size_t print(int value);
  size_t print(unsigned long value);
  size_t println(const char* text);
  size_t println(int value);
  size_t println(unsigned long value);
};

extern HardwareSerialShim Serial;
void delay(unsigned long ms);

#endif  // MCUFORMER_ARDUINO_SHIM_H_
