// MCUF_MLP (tflm_ops/SPEC.md 2.3): fused pre-norm MLP, one token at a time,
// each output token written over its input token.
#include "mcuf_op_common.h"
#include "mcuf_ops.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {
namespace {

constexpr const char* kOp = "MCUF_MLP";
enum {
  kVersion, kHidden, kFc1Rank, kFc2Rank, kLnEps, kLnZp, kFc1TZp, kFc2TZp, kFc1Zp, kGeluZp,
  kResMult, kResShift, kNumOptions
};
const OptionSpec kSpecs[kNumOptions] = {
    {"version", kOpVersion, kOpVersion},
    {"hidden", 1, kMaxSize},
    {"fc1_rank", 0, kMaxSize},
    {"fc2_rank", 0, kMaxSize},
    {"ln_eps", 0, int64_t{1} << 40},
    {"ln_zp", -128, 127},
    {"fc1_t_zp", -128, 127},
    {"fc2_t_zp", -128, 127},
    {"fc1_zp", -128, 127},
    {"gelu_zp", -128, 127},
    {"res_mult", -kInt32Max, kInt32Max},
    {"res_shift", -31, 30}};
enum { kX, kLn, kFc1 };

struct OpData {
  Options<kNumOptions> options;
  int32_t tokens, embed, x_zp, y_zp;
  int32_t scratch_index;

  int32_t hidden() const { return options.value[kHidden]; }
  int32_t fc1_rank() const { return options.value[kFc1Rank]; }
  int32_t fc2_rank() const { return options.value[kFc2Rank]; }
  int gelu_index() const { return kFc1 + LinearTensorCount(fc1_rank()); }
};
static_assert(sizeof(OpData) == kMlpOpDataBytes, "update SPEC.md's persistent bytes");

// Scratch segments (tflm_ops/contract.py), in order: h, then the packed int16
// inputs of kTokenBatch tokens (LN output, low-rank intermediate, GELU output).
enum { kScratchH, kScratchHPacked, kScratchTPacked, kScratchGPacked, kNumScratch };

ScratchLayout<kNumScratch> ScratchOf(const OpData& d) {
  int64_t size[kNumScratch];
  size[kScratchH] = d.embed;
  size[kScratchHPacked] = PackedBytes(d.embed);
  size[kScratchTPacked] = PackedBytes(Max(d.fc1_rank(), d.fc2_rank()));
  size[kScratchGPacked] = PackedBytes(d.hidden());
  return LayoutScratch(size);
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitOpData<OpData>(context, buffer, length, kSpecs);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* d = PreparedOpData<OpData>(node, kOp, kSpecs);
  if (d == nullptr) return kTfLiteError;
  const int32_t* opt = d->options.value;
  if (!IsValidMultiplier(opt[kResMult], opt[kResShift])) {
    MicroPrintf("%s: res_mult/res_shift is not a valid multiplier", kOp);
    return kTfLiteError;
  }
  const int gelu = d->gelu_index();
  if (!ExpectCounts(node, kOp, gelu + 1 + LinearTensorCount(d->fc2_rank())) ||
      !ReadTokensInOut(context, node, kOp, &d->tokens, &d->embed, &d->x_zp, &d->y_zp) ||
      !ExpectLayerNorm(context, node, kOp, kLn, d->embed) ||
      !ExpectLinear(context, node, kOp, "fc1", kFc1, d->fc1_rank(), d->embed, d->hidden()) ||
      !ExpectTensor(context, node, kOp, false, gelu, "gelu_lut", kTfLiteInt8, {256}) ||
      !ExpectLinear(context, node, kOp, "fc2", gelu + 1, d->fc2_rank(), d->hidden(), d->embed)) {
    return kTfLiteError;
  }
  return RequestScratch(context, kOp, ScratchOf(*d).bytes, &d->scratch_index);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& d = *static_cast<const OpData*>(node->user_data);
  const int32_t* opt = d.options.value;
  const int8_t* x = InputInt8(context, node, kX);
  int8_t* y = OutputInt8(context, node);
  const int32_t e_dim = d.embed, hidden = d.hidden();
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, x, d.tokens * e_dim, y, d.tokens * e_dim));
  const int32_t* ln = InputInt32(context, node, kLn);
  const int64_t ln_eps = d.options.wide;
  const int gelu = d.gelu_index();
  const Linear fc1 = GetLinear(context, node, kFc1, d.fc1_rank(), opt[kFc1TZp], e_dim, hidden);
  const int8_t* lut = InputInt8(context, node, gelu);
  const Linear fc2 = GetLinear(context, node, gelu + 1, d.fc2_rank(), opt[kFc2TZp], hidden, e_dim);
  int8_t* scratch = static_cast<int8_t*>(context->GetScratchBuffer(context, d.scratch_index));
  const ScratchLayout<kNumScratch> layout = ScratchOf(d);
  int8_t* h = scratch + layout.offset[kScratchH];
  int16_t* hp = reinterpret_cast<int16_t*>(scratch + layout.offset[kScratchHPacked]);
  int16_t* tp = reinterpret_cast<int16_t*>(scratch + layout.offset[kScratchTPacked]);
  int16_t* gp = reinterpret_cast<int16_t*>(scratch + layout.offset[kScratchGPacked]);
  const int32_t fc1_zp = opt[kFc1Zp];
  const int32_t res_row[2] = {opt[kResMult], opt[kResShift]};
  const RequantRow residual(res_row);
  for (int32_t i0 = 0; i0 < d.tokens; i0 += kTokenBatch) {
    const int32_t nb = Min(kTokenBatch, d.tokens - i0);
    for (int32_t k = 0; k < nb; ++k) {
      LayerNorm(x + (i0 + k) * e_dim, e_dim, ln, ln_eps, opt[kLnZp], h);
      PackToken(h, e_dim, nb, k, hp);
    }
    ForEachRowPacked(fc1.last, LinearLastInputPacked(fc1, hp, nb, tp), nb, 0, hidden,
                     [&](int32_t o, const int32_t* acc) {
                       const RequantRow rq(fc1.last.rq + 2 * o);
                       int16_t* out = gp + PackedIndex(nb, 0, o);
                       for (int32_t k = 0; k < nb; ++k) out[4 * k] = lut[rq.S8(acc[k], fc1_zp) + 128];
                     });
    // y[i0 + k][c] is written after x[i0 + k][c] is last read: y may equal x.
    int8_t* y0 = y + i0 * e_dim;
    const int8_t* x0 = x + i0 * e_dim;
    ForEachRowPacked(fc2.last, LinearLastInputPacked(fc2, gp, nb, tp), nb, 0, e_dim,
                     [&](int32_t c, const int32_t* acc) {
                       const RequantRow rq(fc2.last.rq + 2 * c);
                       for (int32_t k = 0; k < nb; ++k) {
                         const int32_t at = k * e_dim + c;
                         y0[at] = ResidualS8(rq, acc[k], residual, x0[at] - d.x_zp, d.y_zp);
                       }
                     });
  }
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register_MCUF_MLP() { return StaticRegistration<Init, Prepare, Eval>(); }

}  // namespace mcuformer
