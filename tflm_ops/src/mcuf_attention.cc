// MCUF_ATTENTION (tflm_ops/SPEC.md 2.2): fused pre-norm attention; K and V of
// every token first, then one query row at a time written over its token.
#include <string.h>

#include "mcuf_op_common.h"
#include "mcuf_ops.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace mcuformer {
namespace {

constexpr const char* kOp = "MCUF_ATTENTION";
enum {
  kVersion, kHeads, kQkvDim, kQkvRank, kProjRank, kTokensPerPass, kKeepT, kLnEps, kLnZp,
  kQkvTZp, kProjTZp, kSmMult, kSmShift, kCtxMult, kCtxShift, kResMult, kResShift, kNumOptions
};
// Version 2 added `tokens_per_pass` and `keep_t` (SPEC 4); MCUF_MLP is at kOpVersion.
const OptionSpec kSpecs[kNumOptions] = {
    {"version", 2, 2},
    {"heads", 1, kMaxSize},
    {"qkv_dim", 1, kMaxSize},
    {"qkv_rank", 0, kMaxSize},
    {"proj_rank", 0, kMaxSize},
    {"tokens_per_pass", 4, 8},
    {"keep_t", 0, 1},
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
  // E is read from the input in Eval: with tokens_per_pass and keep_t, OpData
  // stays at 96 bytes.
  int32_t tokens, x_zp, y_zp;
  int32_t scratch_index;

  int32_t qkv_dim() const { return options.value[kQkvDim]; }
  int32_t qkv_rank() const { return options.value[kQkvRank]; }
  int32_t proj_rank() const { return options.value[kProjRank]; }
  int32_t tokens_per_pass() const { return options.value[kTokensPerPass]; }
  int32_t keep_t() const { return options.value[kKeepT]; }
  // The qkv intermediate t of every token is kept from the K/V pass for the queries.
  bool keeps_t() const { return keep_t() != 0 && qkv_rank() > 0; }
  int proj_first() const { return kQkv + LinearTensorCount(qkv_rank()); }
};
static_assert(sizeof(OpData) == kAttentionOpDataBytes, "update SPEC.md's persistent bytes");

// Scratch segments (tflm_ops/contract.py), in order. V is kept transposed
// ([D, T]: each context column reads its tokens in a row).
enum {
  kScratchK, kScratchV, kScratchTKept, kScratchHPacked, kScratchTPacked, kScratchQ,
  kScratchQPacked, kScratchCtxPacked, kScratchA, kScratchPPacked, kNumScratch
};

ScratchLayout<kNumScratch> ScratchOf(const OpData& d, int32_t embed) {
  int64_t size[kNumScratch];
  size[kScratchK] = int64_t{d.tokens} * d.qkv_dim();
  size[kScratchV] = int64_t{d.tokens} * d.qkv_dim();
  size[kScratchTKept] = int64_t{d.tokens} * d.qkv_rank() * d.keep_t();
  size[kScratchHPacked] = PackedBytes(embed, d.tokens_per_pass());
  size[kScratchTPacked] = PackedBytes(Max(d.qkv_rank(), d.proj_rank()), d.tokens_per_pass());
  size[kScratchQ] = int64_t{d.tokens_per_pass()} * d.qkv_dim();
  size[kScratchQPacked] = PackedBytes(d.qkv_dim(), d.tokens_per_pass());
  size[kScratchCtxPacked] = PackedBytes(d.qkv_dim(), d.tokens_per_pass());
  size[kScratchA] = int64_t{4} * d.tokens_per_pass() * d.tokens;
  size[kScratchPPacked] = PackedBytes(d.tokens, d.tokens_per_pass());
  return LayoutScratch(size);
}

struct Scratch {
  int8_t *k, *v_t, *t_kept, *q;
  int16_t *h_packed, *t_packed, *q_packed, *ctx_packed, *p_packed;
  int32_t* a;
};

Scratch ScratchPointers(const OpData& d, int32_t embed, uint8_t* base) {
  const ScratchLayout<kNumScratch> layout = ScratchOf(d, embed);
  const int64_t* at = layout.offset;
  auto i8 = [&](int segment) { return reinterpret_cast<int8_t*>(base + at[segment]); };
  auto i16 = [&](int segment) { return reinterpret_cast<int16_t*>(base + at[segment]); };
  return Scratch{i8(kScratchK),          i8(kScratchV),       i8(kScratchTKept),
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
  int32_t embed = 0;
  if (!IsValidMultiplier(opt[kCtxMult], opt[kCtxShift]) ||
      !IsValidMultiplier(opt[kResMult], opt[kResShift]) || d->qkv_dim() % opt[kHeads] != 0) {
    MicroPrintf("%s: invalid ctx/res multiplier or qkv_dim %% heads != 0", kOp);
    return kTfLiteError;
  }
  if (d->tokens_per_pass() != kTokenBatch && d->tokens_per_pass() != kMaxTokenBatch) {
    MicroPrintf("%s: tokens_per_pass %ld is not %ld or %ld", kOp,
                static_cast<long>(d->tokens_per_pass()), static_cast<long>(kTokenBatch),
                static_cast<long>(kMaxTokenBatch));
    return kTfLiteError;
  }
  if (!ExpectCounts(node, kOp, d->proj_first() + LinearTensorCount(d->proj_rank())) ||
      !ReadTokensInOut(context, node, kOp, &d->tokens, &embed, &d->x_zp, &d->y_zp) ||
      !ExpectLayerNorm(context, node, kOp, kLn, embed) ||
      !ExpectLinear(context, node, kOp, "qkv", kQkv, d->qkv_rank(), embed, 3 * d->qkv_dim()) ||
      !ExpectLinear(context, node, kOp, "proj", d->proj_first(), d->proj_rank(), d->qkv_dim(),
                    embed)) {
    return kTfLiteError;
  }
  return RequestScratch(context, kOp, ScratchOf(*d, embed).bytes, &d->scratch_index);
}

// LN of tokens [i0, i0 + nb) packed into s.h_packed.
void PackLayerNorms(const OpData& d, int32_t embed, const int8_t* x, const int32_t* ln,
                    const Scratch& s, int32_t i0, int32_t nb) {
  LayerNormPacked(x + i0 * embed, nb, embed, ln, d.options.wide, d.options.value[kLnZp],
                  s.h_packed);
}

// min(x, 2^bits - 1) for x >= 0.
template <int bits>
inline uint32_t UnsignedSat(uint32_t x) {
#if defined(__ARM_FEATURE_SAT)
  return (uint32_t)__usat((int32_t)x, bits);
#else
  return x > (UINT32_C(1) << bits) - 1 ? (UINT32_C(1) << bits) - 1 : x;
#endif
}

// x[j] = min(4095, (d * M + 2^(S-1)) >> S) of SPEC 1.3 from d in [0, 2^32),
// M in [2^30, 2^31), in one of three ways:
// * S >= 33: only the product's high word matters (d * M < 2^63, so the rounded
//   high word stays below 2^31);
// * 2 <= S <= 32: d is first capped at d_cap, the least d with x >= 4095 (every
//   larger d gives 4095 too), and scaled by 2^(33-S), which then fits 32 bits
//   (d_cap <= 8189 * 2^(S-31) + 1); that is the S = 33 case;
// * S = 1: the 64-bit formula.
struct ScoreExponent {
  enum Mode { kHighWord, kCappedHighWord, kWide };
  Mode mode;
  uint32_t mult, d_cap;
  int32_t shift, pre_shift;

  explicit ScoreExponent(const int32_t* opt)
      : mode(opt[kSmShift] >= 33 ? kHighWord : (opt[kSmShift] >= 2 ? kCappedHighWord : kWide)),
        mult((uint32_t)opt[kSmMult]),
        d_cap(0),
        shift(mode == kCappedHighWord ? 33 : opt[kSmShift]),
        pre_shift(33 - opt[kSmShift]) {
    if (mode == kCappedHighWord) {
      const uint64_t limit = (uint64_t)8189 << (opt[kSmShift] - 1);  // 4095 * 2^S - 2^(S-1)
      d_cap = (uint32_t)((limit + mult - 1) / mult);
    }
  }
};

// e[j] of SPEC 1.3 in place of the scores a[j * step], j < n, of max mx;
// returns their sum.
template <ScoreExponent::Mode kMode>
int32_t ExpRow(int32_t* a, int32_t step, int32_t n, int32_t mx, const ScoreExponent& ex) {
  int32_t sum = 0;
  const uint32_t mult = ex.mult, d_cap = ex.d_cap;
  const int32_t shift = ex.shift, pre_shift = ex.pre_shift;
  for (int32_t* const end = a + n * step; a != end; a += step) {
    uint32_t d = (uint32_t)mx - (uint32_t)*a;
    uint32_t x;
    if (kMode == ScoreExponent::kWide) {
      const uint64_t wide = ((uint64_t)d * mult + (UINT64_C(1) << (shift - 1))) >> shift;
      x = wide > 4095 ? 4095 : (uint32_t)wide;
    } else {
      if (kMode == ScoreExponent::kCappedHighWord) d = (d < d_cap ? d : d_cap) << pre_shift;
      const uint32_t high = (uint32_t)(((uint64_t)d * mult) >> 32);
      x = UnsignedSat<12>((high + (UINT32_C(1) << (shift - 33))) >> (shift - 32));
    }
    *a = MCUF_EXP2_Q15[x & 255] >> (x >> 8);
    sum += *a;
  }
  return sum;
}

// Query k's Q15 probabilities (SPEC 1.3) from its scores a[j * nb], j < n, of
// max mx, packed as int16 for token k of nb, zero in the padding columns up to
// PackedColumns(n): a lone 32768 (every other probability of its row is then
// 0) is packed as 32767, and its index returned (else -1) for the context to
// add its token's value once more.
int32_t PackProbabilities(int32_t* a, int32_t n, int32_t mx, const ScoreExponent& ex, int32_t nb,
                          int32_t k, int16_t* packed) {
  int32_t sum;
  switch (ex.mode) {
    case ScoreExponent::kHighWord:
      sum = ExpRow<ScoreExponent::kHighWord>(a, nb, n, mx, ex);
      break;
    case ScoreExponent::kCappedHighWord:
      sum = ExpRow<ScoreExponent::kCappedHighWord>(a, nb, n, mx, ex);
      break;
    default: sum = ExpRow<ScoreExponent::kWide>(a, nb, n, mx, ex); break;
  }
  // sum >= 32768 (the maximum's e is 32768), so r <= 2^31.
  const uint32_t r = (uint32_t)(((int64_t)1 << 46) / sum);
  auto prob = [&](int32_t j) {
    return UnsignedSat<15>(
        (uint32_t)(((uint64_t)(uint32_t)a[j * nb] * r + (UINT64_C(1) << 30)) >> 31));
  };
  int32_t j = 0;
  for (int16_t* group = packed + 4 * k; j + 3 < n; j += 4, group += 4 * nb) {
#if defined(__ARM_FEATURE_DSP)
    const uint32_t p0 = prob(j), p1 = prob(j + 1), p2 = prob(j + 2), p3 = prob(j + 3);
    const uint32_t words[2] = {p0 | (p2 << 16), p1 | (p3 << 16)};  // little endian
    memcpy(group, words, sizeof(words));
#else
    for (int32_t c = 0; c < 4; ++c) group[PackedIndex(1, 0, c)] = (int16_t)prob(j + c);
#endif
  }
  for (; j < n; ++j) packed[PackedIndex(nb, k, j)] = (int16_t)prob(j);
  for (; j < PackedColumns(n); ++j) packed[PackedIndex(nb, k, j)] = 0;
  if (sum != 32768) return -1;  // p[j] = 32768 needs e[j] * r >= 2^46 - 2^30, so sum = 32768
  for (j = 0; a[j * nb] != 32768; ++j) {
  }
  return j;
}

// One head (columns [begin, begin + n)) of queries [i0, i0 + nb): scores of all
// keys, softmax, and the context written packed into s.ctx_packed.
void Head(const OpData& d, const Scratch& s, const ScoreExponent& ex, int32_t nb, int32_t begin,
          int32_t n) {
  const int32_t* opt = d.options.value;
  const int32_t tokens = d.tokens, dim = d.qkv_dim();
  for (int32_t k = 0; k < nb; ++k) PackToken(s.q + k * dim + begin, n, nb, k, s.q_packed);
  // Scores a[j * nb + k] of key j and query k.
  DotRowsPacked(s.k + begin, dim, n, nullptr, s.q_packed, nb, tokens, s.a);
  int32_t lone[kMaxTokenBatch];
  for (int32_t k = 0; k < nb; ++k) {
    int32_t* a = s.a + k;
    int32_t mx = *a;
    for (const int32_t* p = a; p != a + tokens * nb; p += nb) mx = *p > mx ? *p : mx;
    lone[k] = PackProbabilities(a, tokens, mx, ex, nb, k, s.p_packed);
  }
  int32_t acc[kRowChunk * kMaxTokenBatch];
  const int32_t ctx_row[2] = {opt[kCtxMult], opt[kCtxShift]};
  const RequantRow ctx_rq(ctx_row);
  for (int32_t c0 = begin; c0 < begin + n; c0 += kRowChunk) {
    const int32_t rows = Min(kRowChunk, begin + n - c0);
    const int8_t* v_rows = s.v_t + c0 * tokens;
    // Up to 3 columns past a row of V times zero probabilities: the next row,
    // or after the last one the next scratch segment.
    DotRowsPacked(v_rows, tokens, PackedColumns(tokens), nullptr, s.p_packed, nb, rows, acc);
    for (int32_t r = 0; r < rows; ++r) {
      for (int32_t k = 0; k < nb; ++k) {
        int32_t sum = acc[r * nb + k];
        if (lone[k] >= 0) sum += v_rows[r * tokens + lone[k]];
        s.ctx_packed[PackedIndex(nb, k, c0 + r)] = (int16_t)ctx_rq.S8(sum);
      }
    }
  }
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& d = *static_cast<const OpData*>(node->user_data);
  const int32_t* opt = d.options.value;
  const int8_t* x = InputInt8(context, node, kX);
  int8_t* y = OutputInt8(context, node);
  const int32_t e_dim = tflite::micro::GetEvalInput(context, node, kX)->dims->data[2];
  const int32_t dim = d.qkv_dim(), head_dim = dim / opt[kHeads];
  const int32_t tokens = d.tokens;
  TF_LITE_ENSURE_OK(context, CheckAliasing(kOp, x, tokens * e_dim, y, tokens * e_dim));
  const int32_t* ln = InputInt32(context, node, kLn);
  const Linear qkv = GetLinear(context, node, kQkv, d.qkv_rank(), opt[kQkvTZp], e_dim, 3 * dim);
  const Linear proj =
      GetLinear(context, node, d.proj_first(), d.proj_rank(), opt[kProjTZp], dim, e_dim);
  const Scratch s = ScratchPointers(
      d, e_dim, static_cast<uint8_t*>(context->GetScratchBuffer(context, d.scratch_index)));

  const int32_t batch = d.tokens_per_pass(), rank = d.qkv_rank();
  for (int32_t j0 = 0, nb = 0; j0 < tokens; j0 += nb) {
    nb = PassTokens(batch, tokens - j0);
    PackLayerNorms(d, e_dim, x, ln, s, j0, nb);
    const int16_t* in = s.h_packed;
    if (d.keeps_t()) {
      ForEachRowPacked(qkv.v, in, nb, 0, rank, [&](int32_t o, const int32_t* acc) {
        const RequantRow rq(qkv.v.rq + 2 * o);
        int16_t* packed = s.t_packed + PackedIndex(nb, 0, o);
        int8_t* kept = s.t_kept + j0 * rank + o;
        for (int32_t k = 0; k < nb; ++k) {
          kept[k * rank] = (int8_t)rq.S8(acc[k], qkv.t_zp);
          packed[4 * k] = kept[k * rank];
        }
      });
      in = s.t_packed;
    } else {
      in = LinearLastInputPacked(qkv, in, nb, s.t_packed);
    }
    ForEachRowPacked(qkv.last, in, nb, dim, 3 * dim, [&](int32_t o, const int32_t* acc) {
      const RequantRow rq(qkv.last.rq + 2 * o);
      if (o < 2 * dim) {
        int8_t* k_col = s.k + j0 * dim + (o - dim);
        for (int32_t k = 0; k < nb; ++k) k_col[k * dim] = (int8_t)rq.S8(acc[k]);
      } else {
        int8_t* v_row = s.v_t + (o - 2 * dim) * tokens + j0;
        for (int32_t k = 0; k < nb; ++k) v_row[k] = (int8_t)rq.S8(acc[k]);
      }
    });
  }
  const int32_t res_row[2] = {opt[kResMult], opt[kResShift]};
  const RequantRow residual(res_row);
  const ScoreExponent exponent(opt);
  // The residual term of each int8 x, where segment a (free after the heads) holds 256 of them.
  int32_t* residual_of = 4 * batch * tokens >= 4 * 256 ? s.a + 128 : nullptr;
  // Rows [i0, i0 + nb) of y are written after those rows of x were last read: y may alias x.
  for (int32_t i0 = 0, nb = 0; i0 < tokens; i0 += nb) {
    nb = PassTokens(batch, tokens - i0);
    const int16_t* in;
    if (d.keeps_t()) {
      for (int32_t k = 0; k < nb; ++k) {
        PackToken(s.t_kept + (i0 + k) * rank, rank, nb, k, s.t_packed);
      }
      in = s.t_packed;
    } else {
      PackLayerNorms(d, e_dim, x, ln, s, i0, nb);
      in = LinearLastInputPacked(qkv, s.h_packed, nb, s.t_packed);
    }
    ForEachRowPacked(qkv.last, in, nb, 0, dim, [&](int32_t o, const int32_t* acc) {
      const RequantRow rq(qkv.last.rq + 2 * o);
      for (int32_t k = 0; k < nb; ++k) s.q[k * dim + o] = (int8_t)rq.S8(acc[k]);
    });
    for (int32_t begin = 0; begin < dim; begin += head_dim) {
      Head(d, s, exponent, nb, begin, head_dim);
    }
    if (residual_of != nullptr) {
      for (int32_t v = -128; v < 128; ++v) residual_of[v] = residual.Mbqm(v - d.x_zp);
    }
    int8_t* y0 = y + i0 * e_dim;
    const int8_t* x0 = x + i0 * e_dim;
    ForEachRowPacked(proj.last, LinearLastInputPacked(proj, s.ctx_packed, nb, s.t_packed), nb, 0,
                     e_dim, [&](int32_t c, const int32_t* acc) {
                       const RequantRow rq(proj.last.rq + 2 * c);
                       for (int32_t k = 0; k < nb; ++k) {
                         const int32_t at = k * e_dim + c;
                         const int32_t scaled = rq.Mbqm(acc[k]);
                         const int32_t res = residual_of != nullptr
                                                 ? residual_of[x0[at]]
                                                 : residual.Mbqm(x0[at] - d.x_zp);
                         y0[at] = ResidualAddS8(scaled, res, d.y_zp);
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
