// MCUF_HEAD (tflm_ops/SPEC.md 2.4): final LayerNorm, mean, class-token or
// sequence pooling, classifier.
#include "mcuf_op_common.h"
#include "mcuf_ops.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {
namespace {

constexpr const char* kOp = "MCUF_HEAD";
enum {
  kVersion, kPool, kLnEps, kLnZp, kPoolZp, kPoolMult, kPoolShift, kSmMult, kSmShift, kNumOptions
};
// Version 2 added sequence pooling (pool 2, sm_mult, sm_shift, the score tensor; SPEC 4).
const OptionSpec kSpecs[kNumOptions] = {
    {"version", 2, 2},                   {"pool", 0, 2},
    {"ln_eps", 0, int64_t{1} << 40},     {"ln_zp", -128, 127},
    {"pool_zp", -128, 127},              {"pool_mult", -kInt32Max, kInt32Max},
    {"pool_shift", -31, 30},             {"sm_mult", int64_t{1} << 30, kInt32Max},
    {"sm_shift", 1, 62}};
enum { kX, kLn, kFc };
constexpr int32_t kScore = kFc + 3;  // after L_fc, when pool is kPoolSeq
constexpr int32_t kPoolCls = 1;
constexpr int32_t kPoolSeq = 2;

// The class count is read from the logits' dims in Eval, which keeps OpData at 64 bytes.
struct OpData {
  Options<kNumOptions> options;
  int32_t tokens, embed, y_zp;
  int32_t scratch_index;
};
static_assert(sizeof(OpData) == kHeadOpDataBytes, "update SPEC.md's persistent bytes");

// Scratch segments (tflm_ops/contract.py), in order.
enum { kScratchH, kScratchSum, kScratchPooled, kScratchA, kNumScratch };

ScratchLayout<kNumScratch> ScratchOf(const OpData& d) {
  int64_t size[kNumScratch];
  size[kScratchH] = d.embed;
  size[kScratchSum] = int64_t{4} * d.embed;
  size[kScratchPooled] = d.embed;
  // scores of sequence pooling (pool 2, kPoolSeq; spelled as a number for the contract test)
  size[kScratchA] = d.options.value[kPool] == 2 ? int64_t{4} * d.tokens : 0;
  return LayoutScratch(size);
}

// sum[c] = sum_i weight[i] * (LN(x[i])[c] - z_h), weight 1 for every token when
// `weight` is null (mean pooling), else the Q15 token weights (sequence pooling).
void WeightedTokenSum(const int8_t* x, int32_t tokens, int32_t e_dim, const int32_t* ln,
                      int64_t ln_eps, int32_t z_h, const int32_t* weight, int8_t* h, int32_t* sum) {
  for (int32_t c = 0; c < e_dim; ++c) sum[c] = 0;
  for (int32_t i = 0; i < tokens; ++i) {
    LayerNorm(x + i * e_dim, e_dim, ln, ln_eps, z_h, h);
    const int32_t w = weight == nullptr ? 1 : weight[i];
    for (int32_t c = 0; c < e_dim; ++c) sum[c] += w * (h[c] - z_h);
  }
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
  const bool seq = opt[kPool] == kPoolSeq;
  if (!ExpectCounts(node, kOp, kFc + LinearTensorCount(0) + (seq ? 1 : 0))) return kTfLiteError;
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
  const int32_t classes = y[1];
  if (!ExpectLayerNorm(context, node, kOp, kLn, d->embed) ||
      !ExpectLinear(context, node, kOp, "fc", kFc, 0, d->embed, classes) ||
      (seq && !ExpectTensor(context, node, kOp, false, kScore, "score", kTfLiteInt8, {d->embed}))) {
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
  const int32_t classes = tflite::micro::GetEvalOutput(context, node, 0)->dims->data[1];
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, x, d.tokens * e_dim, logits, classes));
  const int32_t* ln = InputInt32(context, node, kLn);
  const int64_t ln_eps = d.options.wide;
  const LinearFactor fc = GetLinear(context, node, kFc, 0, 0, e_dim, classes).last;
  int8_t* scratch = static_cast<int8_t*>(context->GetScratchBuffer(context, d.scratch_index));
  const ScratchLayout<kNumScratch> layout = ScratchOf(d);
  int8_t* h = scratch + layout.offset[kScratchH];
  int32_t* sum = reinterpret_cast<int32_t*>(scratch + layout.offset[kScratchSum]);
  int8_t* pooled = scratch + layout.offset[kScratchPooled];
  if (opt[kPool] == kPoolCls) {
    LayerNorm(x + (d.tokens - 1) * e_dim, e_dim, ln, ln_eps, opt[kLnZp], pooled);
  } else {
    if (opt[kPool] == kPoolSeq) {
      int32_t* a = reinterpret_cast<int32_t*>(scratch + layout.offset[kScratchA]);
      const int8_t* score = InputInt8(context, node, kScore);
      for (int32_t i = 0; i < d.tokens; ++i) {
        LayerNorm(x + i * e_dim, e_dim, ln, ln_eps, opt[kLnZp], h);
        a[i] = DotS8(h, score, e_dim);
      }
      SoftmaxRow(a, d.tokens, opt[kSmMult], opt[kSmShift]);
      WeightedTokenSum(x, d.tokens, e_dim, ln, ln_eps, opt[kLnZp], a, h, sum);
    } else {
      WeightedTokenSum(x, d.tokens, e_dim, ln, ln_eps, opt[kLnZp], nullptr, h, sum);
    }
    for (int32_t c = 0; c < e_dim; ++c) {
      pooled[c] = static_cast<int8_t>(
          mcuf_sat8(int64_t{opt[kPoolZp]} + mcuf_mbqm(sum[c], opt[kPoolMult], opt[kPoolShift])));
    }
  }
  LinearQuantRows(fc, pooled, 0, classes, d.y_zp, logits);
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register_MCUF_HEAD() { return StaticRegistration<Init, Prepare, Eval>(); }

}  // namespace mcuformer
