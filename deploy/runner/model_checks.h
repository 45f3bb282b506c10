// Structural checks of untrusted .tflite bytes for the host tools (the host
// runner, the load-path fuzzer): TFLM verifies nothing, so a truncated or
// flipped model crashes it. First the flatbuffers verifier (every offset and
// vector inside the bytes), then the bounds TFLM trusts without checking:
// one subgraph, buffer / tensor / opcode indices in range, constant data the
// size of its tensor, per-channel quantization the size of its dimension,
// and an offline memory plan that matches the tensors.
#ifndef MCUFORMER_RUNNER_MODEL_CHECKS_H_
#define MCUFORMER_RUNNER_MODEL_CHECKS_H_

#include <stddef.h>
#include <stdint.h>

namespace mcuformer_runner {

// True when `data` (16-byte aligned) passes; otherwise false and a one-line
// reason in `why`.
bool CheckModel(const uint8_t* data, size_t size, char* why, size_t why_size);

}  // namespace mcuformer_runner

#endif  // MCUFORMER_RUNNER_MODEL_CHECKS_H_
