// MCUF_ATTENTION (tflm_ops/SPEC.md 2.2): fused pre-norm attention; K and V of
// every token first, then one query row at a time written over its token.
#include "mcuf_op_common.h"
#include "mcuf_ops.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {
namespace {

constexpr const char* kOp = "MCUF_ATTENTION";
enum {
  kVersion, kHeads, kQkvDim, kQkvRank, kProjRank, kLnEps, kLnZp, kQkvTZp, kProjTZp,
  kSmMult, kSmShift, kCtxMult, kCtxShift, kResMult, kResShift, kNumOptions
};
const OptionSpec kSpecs[kNumOptions] = {
    {"version", kOpVersion, kOpVersion},
    {"heads", 1, kMaxSize},
    {"qkv_dim", 1, kMaxSize},
    {"qkv_rank", 0, kMaxSize},
    {"proj_rank", 0, kMaxSize},
    {"ln_eps", 0, int64_t{1} << 40},
    {"ln_zp", -128, 127},
    {"qkv_t_zp", -128, 127},
    {"proj_t_zp", -128, 127},
    {"sm_mult", int64_t{1} << 30, kInt32Max},
    {"sm_shift", 1, 62},
    {"ctx_mult", -kInt32Max, kInt32Max},
    {"ctx_shift", -31, 30},
    {"res_mult", -kInt32Max, kInt32Max},
    {"res_shift", -31, 30}};
enum { kX, kLn, kQkv };

struct OpData {
  Options<kNumOptions> options;
  int32_t tokens, embed, x_zp, y_zp;
  int32_t scratch_index;

  int32_t qkv_dim() const { return options.value[kQkvDim]; }
  int32_t qkv_rank() const { return options.value[kQkvRank]; }
  int32_t proj_rank() const { return options.value[kProjRank]; }
  int proj_first() const { return kQkv + LinearTensorCount(qkv_rank()); }
};
static_assert(sizeof(OpData) == kAttentionOpDataBytes, "update SPEC.md's persistent bytes");

// Scratch segments (tflm_ops/contract.py), in order.
enum { kScratchK, kScratchV, kScratchH, kScratchT, kScratchQ, kScratchCtx, kScratchA, kNumScratch };

ScratchLayout<kNumScratch> ScratchOf(const OpData& d) {
  int64_t size[kNumScratch];
  size[kScratchK] = int64_t{d.tokens} * d.qkv_dim();
  size[kScratchV] = int64_t{d.tokens} * d.qkv_dim();
  size[kScratchH] = d.embed;
  size[kScratchT] = Max(d.qkv_rank(), d.proj_rank());
  size[kScratchQ] = d.qkv_dim();
  size[kScratchCtx] = d.qkv_dim();
  size[kScratchA] = int64_t{4} * d.tokens;
  return LayoutScratch(size);
}

struct Scratch {
  int8_t *k, *v, *h, *t, *q, *ctx;
  int32_t* a;
};

Scratch ScratchPointers(const OpData& d, uint8_t* base) {
  const ScratchLayout<kNumScratch> layout = ScratchOf(d);
  int8_t* bytes = reinterpret_cast<int8_t*>(base);
  const int64_t* at = layout.offset;
  return Scratch{bytes + at[kScratchK], bytes + at[kScratchV], bytes + at[kScratchH],
                 bytes + at[kScratchT], bytes + at[kScratchQ], bytes + at[kScratchCtx],
                 reinterpret_cast<int32_t*>(base + at[kScratchA])};
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitOpData<OpData>(context, buffer, length, kSpecs);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* d = PreparedOpData<OpData>(node, kOp, kSpecs);
  if (d == nullptr) return kTfLiteError;
  const int32_t* opt = d->options.value;
  if (!IsValidMultiplier(opt[kCtxMult], opt[kCtxShift]) ||
      !IsValidMultiplier(opt[kResMult], opt[kResShift]) || d->qkv_dim() % opt[kHeads] != 0) {
    MicroPrintf("%s: invalid ctx/res multiplier or qkv_dim %% heads != 0", kOp);
    return kTfLiteError;
  }
  if (!ExpectCounts(node, kOp, d->proj_first() + LinearTensorCount(d->proj_rank())) ||
      !ReadTokensInOut(context, node, kOp, &d->tokens, &d->embed, &d->x_zp, &d->y_zp) ||
      !ExpectLayerNorm(context, node, kOp, kLn, d->embed) ||
      !ExpectLinear(context, node, kOp, "qkv", kQkv, d->qkv_rank(), d->embed, 3 * d->qkv_dim()) ||
      !ExpectLinear(context, node, kOp, "proj", d->proj_first(), d->proj_rank(), d->qkv_dim(),
                    d->embed)) {
    return kTfLiteError;
  }
  return RequestScratch(context, kOp, ScratchOf(*d).bytes, &d->scratch_index);
}

// Scores a[j] = q_h . K[j]_h of one head (columns [begin, begin + n)), four keys per pass.
void HeadScores(const OpData& d, const Scratch& s, int32_t begin, int32_t n) {
  const int32_t dim = d.qkv_dim();
  const int8_t* q = s.q + begin;
  int32_t j = 0;
  for (; j + 3 < d.tokens; j += 4) DotS8x4(q, s.k + j * dim + begin, dim, n, &s.a[j]);
  for (; j < d.tokens; ++j) s.a[j] = DotS8(q, s.k + j * dim + begin, n);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& d = *static_cast<const OpData*>(node->user_data);
  const int32_t* opt = d.options.value;
  const int8_t* x = InputInt8(context, node, kX);
  int8_t* y = OutputInt8(context, node);
  const int32_t e_dim = d.embed, dim = d.qkv_dim(), head_dim = dim / opt[kHeads];
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, x, d.tokens * e_dim, y, d.tokens * e_dim));
  const int32_t* ln = InputInt32(context, node, kLn);
  const int64_t ln_eps = d.options.wide;
  const Linear qkv = GetLinear(context, node, kQkv, d.qkv_rank(), opt[kQkvTZp], e_dim, 3 * dim);
  const Linear proj =
      GetLinear(context, node, d.proj_first(), d.proj_rank(), opt[kProjTZp], dim, e_dim);
  const Scratch s =
      ScratchPointers(d, static_cast<uint8_t*>(context->GetScratchBuffer(context, d.scratch_index)));

  for (int32_t j = 0; j < d.tokens; ++j) {
    LayerNorm(x + j * e_dim, e_dim, ln, ln_eps, opt[kLnZp], s.h);
    const int8_t* in = LinearLastInput(qkv, s.h, s.t);
    LinearQuantRows(qkv.last, in, dim, 2 * dim, 0, s.k + j * dim);
    LinearQuantRows(qkv.last, in, 2 * dim, 3 * dim, 0, s.v + j * dim);
  }
  // Row i of y is written after row i of x was last read: y may alias x.
  for (int32_t i = 0; i < d.tokens; ++i) {
    LayerNorm(x + i * e_dim, e_dim, ln, ln_eps, opt[kLnZp], s.h);
    LinearQuantRows(qkv.last, LinearLastInput(qkv, s.h, s.t), 0, dim, 0, s.q);
    for (int32_t begin = 0; begin < dim; begin += head_dim) {
      HeadScores(d, s, begin, head_dim);
      SoftmaxRow(s.a, d.tokens, opt[kSmMult], opt[kSmShift]);
      AttentionContext(s.a, d.tokens, s.v + begin, dim, head_dim, opt[kCtxMult], opt[kCtxShift],
                       s.ctx + begin);
    }
    LinearResidual(proj.last, LinearLastInput(proj, s.ctx, s.t), x + i * e_dim, d.x_zp,
                   opt[kResMult], opt[kResShift], d.y_zp, y + i * e_dim);
  }
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register_MCUF_ATTENTION() {
  return StaticRegistration<Init, Prepare, Eval>();
}

}  // namespace mcuformer
