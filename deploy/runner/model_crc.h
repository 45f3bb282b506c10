// CRC-32 (IEEE 802.3, the zlib.crc32 of the converter) of the model bytes:
// the app, the Arduino Classifier and the host runner compare it with the
// value the converter wrote (model_data.cc, report.json) before building an
// interpreter, so a model damaged in flash or in transit never runs.
#ifndef MCUFORMER_RUNNER_MODEL_CRC_H_
#define MCUFORMER_RUNNER_MODEL_CRC_H_

#include <stddef.h>
#include <stdint.h>

namespace mcuformer {

uint32_t Crc32(const uint8_t* data, size_t size);

}  // namespace mcuformer

#endif  // MCUFORMER_RUNNER_MODEL_CRC_H_
