#include "mcuf_blocks.h"

#if defined(CMSIS_NN)
#include "Include/arm_nnsupportfunctions.h"
#endif

namespace mcuformer {

int32_t DotS8(const int8_t* a, const int8_t* b, int32_t n) {
  int32_t sum = 0;
  int32_t i = 0;
#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
  for (; i + 4 <= n; i += 4) {
    const int32_t a0 = arm_nn_read_s8x4_ia(&a);
    const int32_t b0 = arm_nn_read_s8x4_ia(&b);
    sum = SMLAD(SXTB16_RORn((uint32_t)a0, 8), SXTB16_RORn((uint32_t)b0, 8), sum);
    sum = SMLAD(SXTB16(a0), SXTB16(b0), sum);
  }
  for (; i < n; ++i) sum += (int32_t)(*a++) * (int32_t)(*b++);
#else
  for (; i < n; ++i) sum += (int32_t)a[i] * (int32_t)b[i];
#endif
  return sum;
}

int32_t LinearAcc(const LinearFactor& f, const int8_t* x, int32_t o) {
  // Wrapping add: a corrupt bias must not be undefined behaviour (the converter keeps it in range).
  return (int32_t)((uint32_t)f.bias[o] + (uint32_t)DotS8(x, f.weights + (int64_t)o * f.in, f.in));
}

void LinearQuantRows(const LinearFactor& f, const int8_t* x, int32_t begin, int32_t end,
                     int32_t z_out, int8_t* y) {
  for (int32_t o = begin; o < end; ++o) {
#if defined(CMSIS_NN)
    // One row per call: the requant table interleaves (m, s) per channel.
    // lhs_offset is 0 (the converter folds the input zero point into the bias),
    // so the kernel sums equal the bias.
    arm_nn_vec_mat_mult_t_s8(x, f.weights + (int64_t)o * f.in, f.bias + o, f.bias + o,
                             y + (o - begin), 0, z_out, f.rq[2 * o], f.rq[2 * o + 1], f.in,
                             1, -128, 127, 1, 0);
#else
    y[o - begin] = (int8_t)mcuf_sat8((int64_t)z_out + mcuf_mbqm(LinearAcc(f, x, o), f.rq[2 * o],
                                                                f.rq[2 * o + 1]));
#endif
  }
}

const int8_t* LinearLastInput(const Linear& layer, const int8_t* x, int8_t* t) {
  if (layer.rank == 0) return x;
  LinearQuantRows(layer.v, x, 0, layer.rank, layer.t_zp, t);
  return t;
}

void LayerNorm(const int8_t* x, int32_t channels, const int32_t* ln, int64_t eps, int32_t z_h,
               int8_t* h) {
  int32_t sum = 0;
  for (int32_t c = 0; c < channels; ++c) sum += x[c];
  uint64_t sum_sq = 0;
  for (int32_t c = 0; c < channels; ++c) {
    const int64_t d = (int64_t)channels * x[c] - sum;
    sum_sq += (uint64_t)(d * d);
  }
  const uint64_t var = sum_sq / (uint64_t)channels + (uint64_t)eps;
  uint64_t den = mcuf_isqrt64(var);
  if (den < 1) den = 1;
  const int64_t inv = ((int64_t)1 << 46) / (int64_t)den;
  for (int32_t c = 0; c < channels; ++c) {
    const int64_t d = (int64_t)channels * x[c] - sum;
    const int32_t n = (int32_t)((d * inv + ((int64_t)1 << 29)) >> 30);
    const int32_t* row = ln + 3 * c;
    h[c] = (int8_t)mcuf_sat8((int64_t)z_h + mcuf_mbqm(n, row[0], row[1]) + row[2]);
  }
}

void SoftmaxRow(int32_t* a, int32_t n, int32_t sm_mult, int32_t sm_shift) {
  int32_t mx = a[0];
  for (int32_t j = 1; j < n; ++j) mx = a[j] > mx ? a[j] : mx;
  int32_t sum = 0;
  for (int32_t j = 0; j < n; ++j) {
    const int64_t d = (int64_t)mx - a[j];
    int64_t x = (d * sm_mult + ((int64_t)1 << (sm_shift - 1))) >> sm_shift;
    if (x > 4095) x = 4095;
    a[j] = MCUF_EXP2_Q15[x & 255] >> (x >> 8);
    sum += a[j];
  }
  const int64_t r = ((int64_t)1 << 46) / sum;
  for (int32_t j = 0; j < n; ++j) a[j] = (int32_t)(((int64_t)a[j] * r + ((int64_t)1 << 30)) >> 31);
}

void LinearResidual(const LinearFactor& f, const int8_t* in, const int8_t* x, int32_t z_x,
                    int32_t res_mult, int32_t res_shift, int32_t z_y, int8_t* y) {
  for (int32_t c = 0; c < f.out; ++c) {
    y[c] = ResidualOut(LinearAcc(f, in, c), f.rq + 2 * c, x[c], z_x, res_mult, res_shift, z_y);
  }
}

}  // namespace mcuformer
