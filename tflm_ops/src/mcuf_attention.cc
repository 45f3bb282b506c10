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

// Scratch segments (tflm_ops/contract.py), in order. V is kept transposed
// ([D, T]: each context column reads its tokens in a row).
enum {
  kScratchK, kScratchV, kScratchH, kScratchHPacked, kScratchTPacked, kScratchQ, kScratchQPacked,
  kScratchCtxPacked, kScratchA, kScratchPPacked, kNumScratch
};

ScratchLayout<kNumScratch> ScratchOf(const OpData& d) {
  int64_t size[kNumScratch];
  size[kScratchK] = int64_t{d.tokens} * d.qkv_dim();
  size[kScratchV] = int64_t{d.tokens} * d.qkv_dim();
  size[kScratchH] = d.embed;
  size[kScratchHPacked] = PackedBytes(d.embed);
  size[kScratchTPacked] = PackedBytes(Max(d.qkv_rank(), d.proj_rank()));
  size[kScratchQ] = int64_t{kTokenBatch} * d.qkv_dim();
  size[kScratchQPacked] = PackedBytes(d.qkv_dim());
  size[kScratchCtxPacked] = PackedBytes(d.qkv_dim());
  size[kScratchA] = int64_t{4} * kTokenBatch * d.tokens;
  size[kScratchPPacked] = PackedBytes(d.tokens);
  return LayoutScratch(size);
}

struct Scratch {
  int8_t *k, *v_t, *h, *q;
  int16_t *h_packed, *t_packed, *q_packed, *ctx_packed, *p_packed;
  int32_t* a;
};

Scratch ScratchPointers(const OpData& d, uint8_t* base) {
  const ScratchLayout<kNumScratch> layout = ScratchOf(d);
  const int64_t* at = layout.offset;
  auto i8 = [&](int segment) { return reinterpret_cast<int8_t*>(base + at[segment]); };
  auto i16 = [&](int segment) { return reinterpret_cast<int16_t*>(base + at[segment]); };
  return Scratch{i8(kScratchK),          i8(kScratchV),       i8(kScratchH),
                 i8(kScratchQ),          i16(kScratchHPacked), i16(kScratchTPacked),
                 i16(kScratchQPacked),   i16(kScratchCtxPacked), i16(kScratchPPacked),
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

// LN of tokens [i0, i0 + nb) packed into s.h_packed.
void PackLayerNorms(const OpData& d, const int8_t* x, const int32_t* ln, const Scratch& s,
                    int32_t i0, int32_t nb) {
  const int32_t* opt = d.options.value;
  for (int32_t k = 0; k < nb; ++k) {
    LayerNorm(x + (i0 + k) * d.embed, d.embed, ln, d.options.wide, opt[kLnZp], s.h);
    PackToken(s.h, d.embed, nb, k, s.h_packed);
  }
}

// One head (columns [begin, begin + n)) of queries [i0, i0 + nb): scores of all
// keys, softmax, and the context written packed into s.ctx_packed.
void Head(const OpData& d, const Scratch& s, int32_t nb, int32_t begin, int32_t n) {
  const int32_t* opt = d.options.value;
  const int32_t tokens = d.tokens, dim = d.qkv_dim();
  for (int32_t k = 0; k < nb; ++k) PackToken(s.q + k * dim + begin, n, nb, k, s.q_packed);
  int32_t acc[kRowChunk * kTokenBatch];
  for (int32_t j0 = 0; j0 < tokens; j0 += kRowChunk) {
    const int32_t rows = Min(kRowChunk, tokens - j0);
    DotRowsPacked(s.k + j0 * dim + begin, dim, n, nullptr, s.q_packed, nb, rows, acc);
    for (int32_t r = 0; r < rows; ++r) {
      for (int32_t k = 0; k < nb; ++k) s.a[k * tokens + j0 + r] = acc[r * nb + k];
    }
  }
  // Q15 probabilities in [0, 32768] packed as int16: a lone 32768 (every other
  // probability of its row is then 0) is packed as 32767 and its token's value
  // added once more below.
  int32_t lone[kTokenBatch];
  for (int32_t k = 0; k < nb; ++k) {
    int32_t* p = s.a + k * tokens;
    SoftmaxRow(p, tokens, opt[kSmMult], opt[kSmShift]);
    lone[k] = -1;
    for (int32_t j = 0; j < tokens; ++j) {
      if (p[j] == 32768) lone[k] = j;
      s.p_packed[PackedIndex(nb, k, j)] = (int16_t)(p[j] == 32768 ? 32767 : p[j]);
    }
  }
  const int32_t ctx_row[2] = {opt[kCtxMult], opt[kCtxShift]};
  const RequantRow ctx_rq(ctx_row);
  for (int32_t c0 = begin; c0 < begin + n; c0 += kRowChunk) {
    const int32_t rows = Min(kRowChunk, begin + n - c0);
    const int8_t* v_rows = s.v_t + c0 * tokens;
    DotRowsPacked(v_rows, tokens, tokens, nullptr, s.p_packed, nb, rows, acc);
    for (int32_t r = 0; r < rows; ++r) {
      for (int32_t k = 0; k < nb; ++k) {
        int32_t sum = acc[r * nb + k];
        if (lone[k] >= 0) sum += v_rows[r * tokens + lone[k]];
        s.ctx_packed[PackedIndex(nb, k, c0 + r)] = (int16_t)ctx_rq.S8(sum, 0);
      }
    }
  }
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& d = *static_cast<const OpData*>(node->user_data);
  const int32_t* opt = d.options.value;
  const int8_t* x = InputInt8(context, node, kX);
  int8_t* y = OutputInt8(context, node);
  const int32_t e_dim = d.embed, dim = d.qkv_dim(), head_dim = dim / opt[kHeads];
  const int32_t tokens = d.tokens;
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, x, tokens * e_dim, y, tokens * e_dim));
  const int32_t* ln = InputInt32(context, node, kLn);
  const Linear qkv = GetLinear(context, node, kQkv, d.qkv_rank(), opt[kQkvTZp], e_dim, 3 * dim);
  const Linear proj =
      GetLinear(context, node, d.proj_first(), d.proj_rank(), opt[kProjTZp], dim, e_dim);
  const Scratch s =
      ScratchPointers(d, static_cast<uint8_t*>(context->GetScratchBuffer(context, d.scratch_index)));

  for (int32_t j0 = 0; j0 < tokens; j0 += kTokenBatch) {
    const int32_t nb = Min(kTokenBatch, tokens - j0);
    PackLayerNorms(d, x, ln, s, j0, nb);
    const int16_t* in = LinearLastInputPacked(qkv, s.h_packed, nb, s.t_packed);
    ForEachRowPacked(qkv.last, in, nb, dim, 3 * dim, [&](int32_t o, const int32_t* acc) {
      const RequantRow rq(qkv.last.rq + 2 * o);
      if (o < 2 * dim) {
        int8_t* k_col = s.k + j0 * dim + (o - dim);
        for (int32_t k = 0; k < nb; ++k) k_col[k * dim] = (int8_t)rq.S8(acc[k], 0);
      } else {
        int8_t* v_row = s.v_t + (o - 2 * dim) * tokens + j0;
        for (int32_t k = 0; k < nb; ++k) v_row[k] = (int8_t)rq.S8(acc[k], 0);
      }
    });
  }
  const int32_t res_row[2] = {opt[kResMult], opt[kResShift]};
  const RequantRow residual(res_row);
  // Rows [i0, i0 + nb) of y are written after those rows of x were last read: y may alias x.
  for (int32_t i0 = 0; i0 < tokens; i0 += kTokenBatch) {
    const int32_t nb = Min(kTokenBatch, tokens - i0);
    PackLayerNorms(d, x, ln, s, i0, nb);
    const int16_t* in = LinearLastInputPacked(qkv, s.h_packed, nb, s.t_packed);
    ForEachRowPacked(qkv.last, in, nb, 0, dim, [&](int32_t o, const int32_t* acc) {
      const RequantRow rq(qkv.last.rq + 2 * o);
      for (int32_t k = 0; k < nb; ++k) s.q[k * dim + o] = (int8_t)rq.S8(acc[k], 0);
    });
    for (int32_t begin = 0; begin < dim; begin += head_dim) Head(d, s, nb, begin, head_dim);
    int8_t* y0 = y + i0 * e_dim;
    const int8_t* x0 = x + i0 * e_dim;
    ForEachRowPacked(proj.last, LinearLastInputPacked(proj, s.ctx_packed, nb, s.t_packed), nb, 0,
                     e_dim, [&](int32_t c, const int32_t* acc) {
                       const RequantRow rq(proj.last.rq + 2 * c);
                       for (int32_t k = 0; k < nb; ++k) {
                         const int32_t at = k * e_dim + c;
                         y0[at] = ResidualS8(rq, acc[k], residual, x0[at] - d.x_zp, d.y_zp);
                       }
                     });
  }
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register_MCUF_ATTENTION() {
  return StaticRegistration<Init, Prepare, Eval>();
}

}  // namespace mcuformer
