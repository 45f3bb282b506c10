// The Arduino core's part of a sketch's run, on the project's platform layer
// (deploy/make/platform): Serial writes lines there, main() runs setup() and
// one loop(), and the sketch's delay() at the end of its loop() ends the run.
#include <stdio.h>

#include "Arduino.h"
#include "deploy/make/platform/platform.h"

void setup();
void loop();

HardwareSerialShim Serial;

namespace {

size_t Write(const char* text) {
  mcuf_platform_write(text);
  size_t n = 0;
  while (text[n]) ++n;
  return n;
}

size_t WriteSigned(long value, bool newline) {
  char text[24];
  snprintf(text, sizeof(text), "%ld", value);
  return Write(text) + (newline ? Write("\n") : 0);
}

size_t WriteUnsigned(unsigned long value, bool newline) {
  char text[24];
  snprintf(text, sizeof(text), "%lu", value);
  return Write(text) + (newline ? Write("\n") : 0);
}

}  // namespace

size_t HardwareSerialShim::print(const char* text) { return Write(text); }
size_t HardwareSerialShim::print(int value) { return WriteSigned(value, false); }
size_t HardwareSerialShim::print(unsigned long value) { return WriteUnsigned(value, false); }
size_t HardwareSerialShim::println(const char* text) { return Write(text) + Write("\n"); }
size_t HardwareSerialShim::println(int value) { return WriteSigned(value, true); }
size_t HardwareSerialShim::println(unsigned long value) { return WriteUnsigned(value, true); }

void delay(unsigned long) { mcuf_platform_exit(0); }

int main() {
  mcuf_platform_init();
  setup();
  loop();
  return 0;
}
