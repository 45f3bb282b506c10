// Building blocks of tflm_ops/SPEC.md section 1 as plain functions on raw
// buffers: linear (full and low rank), LayerNorm, row softmax, GELU LUT and the
// residual epilogue. No TFLM types here, so the ops and tests share them.
#ifndef MCUFORMER_TFLM_OPS_MCUF_BLOCKS_H_
#define MCUFORMER_TFLM_OPS_MCUF_BLOCKS_H_

#include <stdint.h>

#include "mcuf_fixedpoint.h"

#if defined(__ARM_FEATURE_SAT)
#include <arm_acle.h>
#endif

namespace mcuformer {

// One factor of a linear layer: W int8 [out, in], bias int32 [out], rq [out, 2].
struct LinearFactor {
  const int8_t* weights;
  const int32_t* bias;
  const int32_t* rq;
  int32_t in;
  int32_t out;
};

// A linear layer (SPEC 1.1): `last` is W (full rank) or U (low rank, then `v`
// computes the int8 intermediate t with zero point t_zp).
struct Linear {
  LinearFactor v;
  LinearFactor last;
  int32_t rank;
  int32_t t_zp;
};

// sum_i a[i] * b[i] (int32) of two int8 vectors.
int32_t DotS8(const int8_t* a, const int8_t* b, int32_t n);

// dots[r] = sum_i x[i] * w[r * stride + i] for r = 0..3: four rows in one
// pass over x (the CMSIS-NN build reads and multiplies four int8 at a time).
void DotS8x4(const int8_t* x, const int8_t* w, int32_t stride, int32_t n, int32_t* dots);

// int32 addition that wraps instead of being undefined on overflow (a corrupt
// bias); the converter keeps accumulators in range.
static inline int32_t WrapAdd(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

// Tokens per pass of the token-batched linears of MCUF_ATTENTION and MCUF_MLP:
// each weight word is loaded and sign-extended once for this many tokens
// (their scratch sizes in tflm_ops/contract.py depend on it).
constexpr int32_t kTokenBatch = 4;
// The most tokens per pass of any op (MCUF_ATTENTION's `tokens_per_pass`):
// DotRowsPacked takes 1 to kTokenBatch tokens or this many.
constexpr int32_t kMaxTokenBatch = 8;

// Tokens of the next pass with `left` tokens left: `batch` (kTokenBatch or
// kMaxTokenBatch), else kTokenBatch, else the rest.
static inline int32_t PassTokens(int32_t batch, int32_t left) {
  return left >= batch ? batch : (left > kTokenBatch ? kTokenBatch : left);
}

// Packed activations of nb <= kMaxTokenBatch tokens of n int8 values each,
// sign-extended to int16 in groups of four columns; group g of token t holds
// x[4g], x[4g+2], x[4g+1], x[4g+3] (the halves SXTB16 splits a weight word
// into), groups of all tokens interleaved: nb * PackedColumns(n) int16.
static inline int32_t PackedColumns(int32_t n) { return (n + 3) & ~3; }
static inline int32_t PackedIndex(int32_t nb, int32_t t, int32_t c) {
  return ((c >> 2) * nb + t) * 4 + (((c & 1) << 1) | ((c >> 1) & 1));
}

// Writes token t's int8 vector x[0..n) into a packed buffer of nb tokens.
void PackToken(const int8_t* x, int32_t n, int32_t nb, int32_t t, int16_t* packed);

// acc[r * nb + t] = bias[r] + sum_{i < n} x_t[i] * w[r * stride + i] for
// r < rows, t < nb (bias 0 when null), from packed activations x: each weight
// row is read once for all nb tokens (1 to kTokenBatch, or kMaxTokenBatch).
void DotRowsPacked(const int8_t* w, int32_t stride, int32_t n, const int32_t* bias,
                   const int16_t* x, int32_t nb, int32_t rows, int32_t* acc);

// Rows per DotRowsPacked call of ForEachRowPacked (its stack buffer).
constexpr int32_t kRowChunk = 16;

// Calls emit(o, acc) with acc[t] = bias[o] + sum_i x_t[i] * W[o, i], t < nb,
// for o = begin..end-1 in order, from packed activations.
template <typename Emit>
void ForEachRowPacked(const LinearFactor& f, const int16_t* packed, int32_t nb, int32_t begin,
                      int32_t end, Emit&& emit) {
  int32_t acc[kRowChunk * kMaxTokenBatch];
  for (int32_t o0 = begin; o0 < end; o0 += kRowChunk) {
    const int32_t o1 = end - o0 < kRowChunk ? end : o0 + kRowChunk;
    DotRowsPacked(f.weights + (int64_t)o0 * f.in, f.in, f.in, f.bias + o0, packed, nb, o1 - o0,
                  acc);
    const int32_t* a = acc;
    for (int32_t o = o0; o < o1; ++o, a += nb) emit(o, a);
  }
}

// Saturates v to a signed `bits`-bit value.
template <int bits>
static inline int32_t SatBits(int32_t v) {
#if defined(__ARM_FEATURE_SAT)
  return __ssat(v, bits);
#else
  const int32_t hi = (1 << (bits - 1)) - 1;
  return v < -hi - 1 ? -hi - 1 : (v > hi ? hi : v);
#endif
}

// a + b saturated to int32.
static inline int32_t SatAdd32(int32_t a, int32_t b) {
#if defined(__ARM_FEATURE_QBIT)
  return __qadd(a, b);
#else
  const int64_t sum = (int64_t)a + b;
  return sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : (int32_t)sum);
#endif
}

// MBQM(acc, rq_row) with the row's constants computed once; the row is one
// Prepare accepted (m is never INT32_MIN, so SaturatingRoundingDoublingHighMul
// cannot saturate).
struct RequantRow {
  int32_t m, left, right, mask, half;

  explicit RequantRow(const int32_t* rq_row)
      : m(rq_row[0]),
        left(rq_row[1] > 0 ? rq_row[1] : 0),
        right(rq_row[1] > 0 ? 0 : -rq_row[1]),
        mask((int32_t)((UINT32_C(1) << right) - 1u)),
        half(mask >> 1) {}

  int32_t Mbqm(int32_t acc) const {
    const int32_t shifted = (int32_t)((uint32_t)acc << left);
    const int64_t product = (int64_t)shifted * (int64_t)m;
    const int32_t high = (int32_t)((product + ((int64_t)1 << 30)) >> 31);
    return (high >> right) + ((high & mask) > half - (high >> 31) ? 1 : 0);
  }

  // sat8(z + MBQM(acc)); |z| <= 128, so saturating MBQM to 10 bits first
  // changes nothing.
  int32_t S8(int32_t acc, int32_t z) const { return SatBits<8>(SatBits<10>(Mbqm(acc)) + z); }
  // sat8(MBQM(acc)): S8(acc, 0).
  int32_t S8(int32_t acc) const { return SatBits<8>(Mbqm(acc)); }
};

// The low-rank intermediate t = linear_q(x; V) of nb packed tokens, packed.
void LinearFirstFactorPacked(const Linear& layer, const int16_t* x, int32_t nb, int16_t* t);

// The packed input of a layer's last factor: x itself (full rank) or its
// packed intermediate written to `t` (low rank).
static inline const int16_t* LinearLastInputPacked(const Linear& layer, const int16_t* x,
                                                   int32_t nb, int16_t* t) {
  if (layer.rank == 0) return x;
  LinearFirstFactorPacked(layer, x, nb, t);
  return t;
}

// acc[o] = bias[o] + sum_i x[i] * W[o, i].
static inline int32_t LinearAcc(const LinearFactor& f, const int8_t* x, int32_t o) {
  return WrapAdd(f.bias[o], DotS8(x, f.weights + (int64_t)o * f.in, f.in));
}

// Calls emit(o, acc[o]) for o = begin..end-1 in order, four rows per pass over x.
template <typename Emit>
void ForEachAcc(const LinearFactor& f, const int8_t* x, int32_t begin, int32_t end, Emit&& emit) {
  int32_t o = begin;
  for (; o + 3 < end; o += 4) {
    int32_t dots[4];
    DotS8x4(x, f.weights + (int64_t)o * f.in, f.in, f.in, dots);
    for (int32_t k = 0; k < 4; ++k) emit(o + k, WrapAdd(f.bias[o + k], dots[k]));
  }
  for (; o < end; ++o) emit(o, LinearAcc(f, x, o));
}

// y[o - begin] = sat8(z_out + MBQM(acc[o], rq[o])) for o in [begin, end).
void LinearQuantRows(const LinearFactor& f, const int8_t* x, int32_t begin, int32_t end,
                     int32_t z_out, int8_t* y);

// The input of the last factor: x itself (full rank) or t = linear_q(x; V)
// written to `t` (low rank).
const int8_t* LinearLastInput(const Linear& layer, const int8_t* x, int8_t* t);

// h[c] = LN(x)[c] (SPEC 1.2); ln is int32 [E, 3] rows (m_c, s_c, b_c).
void LayerNorm(const int8_t* x, int32_t channels, const int32_t* ln, int64_t eps,
               int32_t z_h, int8_t* h);

// LayerNorm (SPEC 1.2) of nb <= kMaxTokenBatch tokens x[k * channels ..], packed
// (PackToken) into `packed`.
void LayerNormPacked(const int8_t* x, int32_t nb, int32_t channels, const int32_t* ln,
                     int64_t eps, int32_t z_h, int16_t* packed);

// Scores a[0..n) in, Q15 probabilities out, in place (SPEC 1.3).
void SoftmaxRow(int32_t* a, int32_t n, int32_t sm_mult, int32_t sm_shift);

// GELU (SPEC 1.4) in place: a[k] = lut[a[k] + 128].
static inline void GeluLut(int8_t* a, int32_t n, const int8_t* lut) {
  for (int32_t k = 0; k < n; ++k) a[k] = lut[a[k] + 128];
}

// One head's context (SPEC 2.2): ctx[c] = sat8(MBQM(sum_j p[j] * v[j * stride + c],
// mult, shift)) for c in [0, columns), from Q15 probabilities p[0..n) in
// [0, 32768], which it may overwrite.
void AttentionContext(int32_t* p, int32_t n, const int8_t* v, int32_t stride, int32_t columns,
                      int32_t mult, int32_t shift, int8_t* ctx);

// The residual epilogue (SPEC 1.5) from the channel's MBQM(acc), `scaled`, and
// the residual term MBQM(x - z_x, res_mult, res_shift), `res`.
static inline int8_t ResidualAddS8(int32_t scaled, int32_t res, int32_t z_y) {
  // Saturating int32 adds keep the sign of any sum beyond int32 (|z_y| <= 128),
  // so sat8 of them equals sat8 of the exact sum.
  return (int8_t)SatBits<8>(SatAdd32(SatAdd32(scaled, res), z_y));
}

// Residual epilogue (SPEC 1.5) for one channel from its requant row and the
// op's residual multiplier, x_centered = x - z_x.
static inline int8_t ResidualS8(const RequantRow& rq, int32_t acc, const RequantRow& residual,
                                int32_t x_centered, int32_t z_y) {
  return ResidualAddS8(rq.Mbqm(acc), residual.Mbqm(x_centered), z_y);
}

// Residual epilogue (SPEC 1.5) for one channel.
static inline int8_t ResidualOut(int32_t acc, const int32_t* rq_row, int32_t x, int32_t z_x,
                                 int32_t res_mult, int32_t res_shift, int32_t z_y) {
  return (int8_t)mcuf_sat8((int64_t)z_y + mcuf_mbqm(acc, rq_row[0], rq_row[1]) +
                           mcuf_mbqm(x - z_x, res_mult, res_shift));
}

// y[c] = residual epilogue of layer's last accumulator on `in`, with x[c];
// y may equal x.
void LinearResidual(const LinearFactor& f, const int8_t* in, const int8_t* x, int32_t z_x,
                    int32_t res_mult, int32_t res_shift, int32_t z_y, int8_t* y);

}  // namespace mcuformer

#endif  // MCUFORMER_TFLM_OPS_MCUF_BLOCKS_H_
