// The op resolver of the project's runners: the MCUFormer custom ops
// (mcuformer::RegisterOps) plus the builtins that TFLiteConverter's int8 ViT
// graphs use, so one binary runs our model and the builtin-op baseline.
#ifndef MCUFORMER_RUNNER_OP_RESOLVER_H_
#define MCUFORMER_RUNNER_OP_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace mcuformer_runner {

constexpr unsigned int kMaxOps = 64;
using Resolver = tflite::MicroMutableOpResolver<kMaxOps>;

// The MCUFormer custom ops (mcuformer::RegisterOps).
TfLiteStatus AddCustomOps(Resolver& resolver);
// The builtins of TFLiteConverter's ViT graphs, each unless already added.
TfLiteStatus AddBuiltinOps(Resolver& resolver);

inline TfLiteStatus AddAllOps(Resolver& resolver) {
  TF_LITE_ENSURE_STATUS(AddCustomOps(resolver));
  return AddBuiltinOps(resolver);
}

}  // namespace mcuformer_runner

#endif  // MCUFORMER_RUNNER_OP_RESOLVER_H_
