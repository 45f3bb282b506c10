// MCUF_HEAD (tflm_ops/SPEC.md 2.4): final LayerNorm, mean or class-token
// pooling, classifier.
#include "mcuf_op_common.h"
#include "mcuf_ops.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {
namespace {

constexpr const char* kOp = "MCUF_HEAD";
enum { kVersion, kPool, kLnEps, kLnZp, kPoolZp, kPoolMult, kPoolShift, kNumOptions };
const OptionSpec kSpecs[kNumOptions] = {
    {"version", kOpVersion, kOpVersion}, {"pool", 0, 1},
    {"ln_eps", 0, int64_t{1} << 40},     {"ln_zp", -128, 127},
    {"pool_zp", -128, 127},              {"pool_mult", -kInt32Max, kInt32Max},
    {"pool_shift", -31, 30}};
enum { kX, kLn, kFc };
constexpr int32_t kPoolMean = 0;

struct OpData {
  Options<kNumOptions> options;
  int32_t tokens, embed, classes, y_zp;
  int32_t scratch_index;
};
static_assert(sizeof(OpData) == kHeadOpDataBytes, "update SPEC.md's persistent bytes");

// Scratch segments (tflm_ops/contract.py), in order.
enum { kScratchH, kScratchSum, kScratchPooled, kNumScratch };

ScratchLayout<kNumScratch> ScratchOf(const OpData& d) {
  int64_t size[kNumScratch];
  size[kScratchH] = d.embed;
  size[kScratchSum] = int64_t{4} * d.embed;
  size[kScratchPooled] = d.embed;
  return LayoutScratch(size);
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitOpData<OpData>(context, buffer, length, kSpecs);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* d = PreparedOpData<OpData>(node, kOp, kSpecs);
  if (d == nullptr) return kTfLiteError;
  const int32_t* opt = d->options.value;
  if (!IsValidMultiplier(opt[kPoolMult], opt[kPoolShift])) {
    MicroPrintf("%s: pool_mult/pool_shift is not a valid multiplier", kOp);
    return kTfLiteError;
  }
  if (!ExpectCounts(node, kOp, kFc + LinearTensorCount(0))) return kTfLiteError;
  int32_t x[3], y[2], x_zp;
  if (!ReadActivationShape(context, node, kOp, false, kX, 3, x, &x_zp) ||
      !ReadActivationShape(context, node, kOp, true, 0, 2, y, &d->y_zp)) {
    return kTfLiteError;
  }
  if (x[0] != 1 || y[0] != 1 || x[1] > kMaxSize || x[2] > kMaxSize || y[1] > kMaxSize ||
      int64_t{x[1]} * x[2] > kInt32Max) {
    MicroPrintf("%s: x must be [1, T, E] and logits [1, K] with T, E, K <= %ld", kOp,
                static_cast<long>(kMaxSize));
    return kTfLiteError;
  }
  d->tokens = x[1];
  d->embed = x[2];
  d->classes = y[1];
  if (!ExpectLayerNorm(context, node, kOp, kLn, d->embed) ||
      !ExpectLinear(context, node, kOp, "fc", kFc, 0, d->embed, d->classes)) {
    return kTfLiteError;
  }
  return RequestScratch(context, kOp, ScratchOf(*d).bytes, &d->scratch_index);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& d = *static_cast<const OpData*>(node->user_data);
  const int32_t* opt = d.options.value;
  const int8_t* x = InputInt8(context, node, kX);
  int8_t* logits = OutputInt8(context, node);
  const int32_t e_dim = d.embed;
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, x, d.tokens * e_dim, logits, d.classes));
  const int32_t* ln = InputInt32(context, node, kLn);
  const int64_t ln_eps = d.options.wide;
  const LinearFactor fc = GetLinear(context, node, kFc, 0, 0, e_dim, d.classes).last;
  int8_t* scratch = static_cast<int8_t*>(context->GetScratchBuffer(context, d.scratch_index));
  const ScratchLayout<kNumScratch> layout = ScratchOf(d);
  int8_t* h = scratch + layout.offset[kScratchH];
  int32_t* sum = reinterpret_cast<int32_t*>(scratch + layout.offset[kScratchSum]);
  int8_t* pooled = scratch + layout.offset[kScratchPooled];
  if (opt[kPool] == kPoolMean) {
    for (int32_t c = 0; c < e_dim; ++c) sum[c] = 0;
    for (int32_t i = 0; i < d.tokens; ++i) {
      LayerNorm(x + i * e_dim, e_dim, ln, ln_eps, opt[kLnZp], h);
      for (int32_t c = 0; c < e_dim; ++c) sum[c] += h[c] - opt[kLnZp];
    }
    for (int32_t c = 0; c < e_dim; ++c) {
      pooled[c] = static_cast<int8_t>(
          mcuf_sat8(int64_t{opt[kPoolZp]} + mcuf_mbqm(sum[c], opt[kPoolMult], opt[kPoolShift])));
    }
  } else {
    LayerNorm(x + (d.tokens - 1) * e_dim, e_dim, ln, ln_eps, opt[kLnZp], pooled);
  }
  LinearQuantRows(fc, pooled, 0, d.classes, d.y_zp, logits);
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register_MCUF_HEAD() { return StaticRegistration<Init, Prepare, Eval>(); }

}  // namespace mcuformer
