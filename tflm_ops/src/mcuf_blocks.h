// Building blocks of tflm_ops/SPEC.md section 1 as plain functions on raw
// buffers: linear (full and low rank), LayerNorm, row softmax, GELU LUT and the
// residual epilogue. No TFLM types here, so the ops and tests share them.
#ifndef MCUFORMER_TFLM_OPS_MCUF_BLOCKS_H_
#define MCUFORMER_TFLM_OPS_MCUF_BLOCKS_H_

#include <stdint.h>

#include "mcuf_fixedpoint.h"

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
