// The MCUFormer custom ops (tflm_ops/SPEC.md) for TensorFlow Lite Micro.
#ifndef MCUFORMER_TFLM_OPS_MCUF_OPS_H_
#define MCUFORMER_TFLM_OPS_MCUF_OPS_H_

#include <stddef.h>

#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace mcuformer {

// Custom code names as written by the converter (SPEC section 2).
constexpr const char* kPatchEmbedName = "MCUF_PATCH_EMBED";
constexpr const char* kAttentionName = "MCUF_ATTENTION";
constexpr const char* kMlpName = "MCUF_MLP";
constexpr const char* kHeadName = "MCUF_HEAD";

// Operators RegisterOps adds: the four custom ops (the graphs use no builtins).
constexpr unsigned int kOpResolverSize = 4;

// sizeof each op's OpData, the persistent bytes its Init allocates (the same
// on 32- and 64-bit targets: int32/int64 fields only). SPEC.md lists them.
constexpr size_t kPatchEmbedOpDataBytes = 80;
constexpr size_t kAttentionOpDataBytes = 96;
constexpr size_t kMlpOpDataBytes = 88;
constexpr size_t kHeadOpDataBytes = 64;

const TFLMRegistration* Register_MCUF_PATCH_EMBED();
const TFLMRegistration* Register_MCUF_ATTENTION();
const TFLMRegistration* Register_MCUF_MLP();
const TFLMRegistration* Register_MCUF_HEAD();

// Adds every op the converter's graphs use to `resolver`.
template <unsigned int tOpCount>
TfLiteStatus RegisterOps(tflite::MicroMutableOpResolver<tOpCount>& resolver) {
  static_assert(tOpCount >= kOpResolverSize, "resolver too small for mcuformer::RegisterOps");
  TF_LITE_ENSURE_STATUS(resolver.AddCustom(kPatchEmbedName, Register_MCUF_PATCH_EMBED()));
  TF_LITE_ENSURE_STATUS(resolver.AddCustom(kAttentionName, Register_MCUF_ATTENTION()));
  TF_LITE_ENSURE_STATUS(resolver.AddCustom(kMlpName, Register_MCUF_MLP()));
  TF_LITE_ENSURE_STATUS(resolver.AddCustom(kHeadName, Register_MCUF_HEAD()));
  return kTfLiteOk;
}

}  // namespace mcuformer

#endif  // MCUFORMER_TFLM_OPS_MCUF_OPS_H_
