#include "mcuf_blocks.h"

#include <string.h>

#if defined(CMSIS_NN)
#include "Include/arm_nnsupportfunctions.h"
#endif

namespace mcuformer {

int32_t DotS8(const int8_t* a, const int8_t* b, int32_t n) {
  int32_t sum = 0;
  int32_t i = 0;
#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
  for (; i + 4 <= n; i += 4) {
    const int32_t a4 = arm_nn_read_s8x4_ia(&a);
    const int32_t b4 = arm_nn_read_s8x4_ia(&b);
    sum = SMLAD(SXTB16_RORn((uint32_t)a4, 8), SXTB16_RORn((uint32_t)b4, 8), sum);
    sum = SMLAD(SXTB16(a4), SXTB16(b4), sum);
  }
#endif
  for (; i < n; ++i) sum += (int32_t)(*a++) * (int32_t)(*b++);
  return sum;
}

void DotS8x4(const int8_t* x, const int8_t* w, int32_t stride, int32_t n, int32_t* dots) {
  const int8_t* w0 = w;
  const int8_t* w1 = w + stride;
  const int8_t* w2 = w + 2 * stride;
  const int8_t* w3 = w + 3 * stride;
  int32_t acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
  int32_t i = 0;
#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
  for (; i + 4 <= n; i += 4) {
    const int32_t x4 = arm_nn_read_s8x4_ia(&x);
    const int32_t x_odd = SXTB16_RORn((uint32_t)x4, 8), x_even = SXTB16(x4);
    int32_t w4 = arm_nn_read_s8x4_ia(&w0);
    acc0 = SMLAD(SXTB16_RORn((uint32_t)w4, 8), x_odd, acc0);
    acc0 = SMLAD(SXTB16(w4), x_even, acc0);
    w4 = arm_nn_read_s8x4_ia(&w1);
    acc1 = SMLAD(SXTB16_RORn((uint32_t)w4, 8), x_odd, acc1);
    acc1 = SMLAD(SXTB16(w4), x_even, acc1);
    w4 = arm_nn_read_s8x4_ia(&w2);
    acc2 = SMLAD(SXTB16_RORn((uint32_t)w4, 8), x_odd, acc2);
    acc2 = SMLAD(SXTB16(w4), x_even, acc2);
    w4 = arm_nn_read_s8x4_ia(&w3);
    acc3 = SMLAD(SXTB16_RORn((uint32_t)w4, 8), x_odd, acc3);
    acc3 = SMLAD(SXTB16(w4), x_even, acc3);
  }
#endif
  for (; i < n; ++i) {
    const int32_t xi = *x++;
    acc0 += xi * (int32_t)(*w0++);
    acc1 += xi * (int32_t)(*w1++);
    acc2 += xi * (int32_t)(*w2++);
    acc3 += xi * (int32_t)(*w3++);
  }
  dots[0] = acc0;
  dots[1] = acc1;
  dots[2] = acc2;
  dots[3] = acc3;
}

void PackToken(const int8_t* x, int32_t n, int32_t nb, int32_t t, int16_t* packed) {
  int32_t c = 0;
#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
  // SXTB16 splits four columns into the packed halves (x0, x2) and (x1, x3).
  for (int16_t* group = packed + 4 * t; c + 3 < n; c += 4, group += 4 * nb) {
    const int32_t x4 = arm_nn_read_s8x4_ia(&x);
    const int32_t halves[2] = {SXTB16(x4), SXTB16_RORn((uint32_t)x4, 8)};
    memcpy(group, halves, sizeof(halves));
  }
#endif
  for (; c < n; ++c) packed[PackedIndex(nb, t, c)] = *x++;
}

namespace {

#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
// Two words in one LDRD, post-incremented (GCC pairs no loads for the Cortex-M7).
static inline void LoadPairIa(const int16_t** p, int32_t* lo, int32_t* hi) {
  struct Pair {
    int32_t v[2];
  };
  __asm__("ldrd %0, %1, [%2], #8"
          : "=r"(*lo), "=r"(*hi), "+r"(*p)
          : "m"(*reinterpret_cast<const Pair*>(*p)));
}

// One group of four columns for NB tokens: a weight word, split by SXTB16,
// times each token's packed halves (one LDRD), two SMLADs per token.
template <int NB>
struct PackedGroup {
  static inline __attribute__((always_inline)) void Step(const int8_t** w, const int16_t** x,
                                                         int32_t* acc) {
    const int32_t w4 = arm_nn_read_s8x4_ia(w);
    const int32_t w_even = SXTB16(w4), w_odd = SXTB16_RORn((uint32_t)w4, 8);
#pragma GCC unroll 8
    for (int t = 0; t < NB; ++t) {
      int32_t x02, x13;
      LoadPairIa(x, &x02, &x13);
      acc[t] = SMLAD(w_even, x02, acc[t]);
      acc[t] = SMLAD(w_odd, x13, acc[t]);
    }
  }
};

// Eight tokens take all 14 allocatable registers (eight accumulators, the two
// pointers, the two weight halves and one LDRD pair), which GCC spills and
// shuffles: a row of them is written out, its loop bounds, bias and output
// address read from the stack.
#define MCUF_GROUP8_SMLAD2(a)                         \
  "ldrd %[x02], %[x13], [%[x]], #8\n\t"              \
  "smlad %[" a "], %[we], %[x02], %[" a "]\n\t" \
  "smlad %[" a "], %[wo], %[x13], %[" a "]\n\t"
#define MCUF_GROUP8                                                                        \
  "ldr %[wo], [%[w]], #4\n\t"                                                              \
  "sxtb16 %[we], %[wo]\n\t"                                                                \
  "sxtb16 %[wo], %[wo], ror #8\n\t" MCUF_GROUP8_SMLAD2("a0") MCUF_GROUP8_SMLAD2("a1")      \
      MCUF_GROUP8_SMLAD2("a2") MCUF_GROUP8_SMLAD2("a3") MCUF_GROUP8_SMLAD2("a4")             \
          MCUF_GROUP8_SMLAD2("a5") MCUF_GROUP8_SMLAD2("a6") MCUF_GROUP8_SMLAD2("a7")

// dots[t] = bias + the packed dot product of the row's first n & ~3 columns, t < 8.
inline void DotPackedGroups8(const int8_t* w, const int16_t* x, int32_t n, int32_t bias,
                             int32_t* dots) {
  struct Bounds {
    const int8_t* block_end;  // after the groups taken eight at a time
    const int8_t* end;        // after the last whole group
    int32_t bias;
    int32_t* dots;
  } b = {w + (n & -32), w + (n & -4), bias, dots};
  int32_t a0, a1, a2, a3, a4, a5, a6, a7, w_even, w_odd, x02, x13;
  __asm__ volatile(
      "ldr %[a0], %[bias]\n\t"
      "mov %[a1], %[a0]\n\t"
      "mov %[a2], %[a0]\n\t"
      "mov %[a3], %[a0]\n\t"
      "mov %[a4], %[a0]\n\t"
      "mov %[a5], %[a0]\n\t"
      "mov %[a6], %[a0]\n\t"
      "mov %[a7], %[a0]\n\t"
      "ldr %[x02], %[block_end]\n\t"
      "cmp %[w], %[x02]\n\t"
      "beq 2f\n"
      "1:\n\t" MCUF_GROUP8 MCUF_GROUP8 MCUF_GROUP8 MCUF_GROUP8 MCUF_GROUP8 MCUF_GROUP8
          MCUF_GROUP8 MCUF_GROUP8
      "ldr %[x02], %[block_end]\n\t"
      "cmp %[w], %[x02]\n\t"
      "bne 1b\n"
      "2:\n\t"
      "ldr %[x02], %[end]\n\t"
      "cmp %[w], %[x02]\n\t"
      "beq 4f\n"
      "3:\n\t" MCUF_GROUP8
      "ldr %[x02], %[end]\n\t"
      "cmp %[w], %[x02]\n\t"
      "bne 3b\n"
      "4:\n\t"
      "ldr %[x02], %[dots]\n\t"
      "strd %[a0], %[a1], [%[x02]]\n\t"
      "strd %[a2], %[a3], [%[x02], #8]\n\t"
      "strd %[a4], %[a5], [%[x02], #16]\n\t"
      "strd %[a6], %[a7], [%[x02], #24]\n\t"
      : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [a4] "=&r"(a4),
        [a5] "=&r"(a5), [a6] "=&r"(a6), [a7] "=&r"(a7), [w] "+r"(w), [x] "+r"(x),
        [we] "=&r"(w_even), [wo] "=&r"(w_odd), [x02] "=&r"(x02), [x13] "=&r"(x13)
      : [block_end] "m"(b.block_end), [end] "m"(b.end), [bias] "m"(b.bias), [dots] "m"(b.dots)
      : "memory", "cc");
}
#undef MCUF_GROUP8
#undef MCUF_GROUP8_SMLAD2
#endif

template <int NB>
inline __attribute__((always_inline)) void DotPackedN(const int8_t* w, const int16_t* x,
                                                      int32_t n, int32_t bias, int32_t* dots) {
  int32_t acc[NB];
#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
  // Per four columns: one weight load and two SXTB16 for NB tokens' two SMLADs
  // each (one LDRD of their packed halves). The loop runs over blocks of eight
  // (four) groups to an end pointer and one jump enters the remaining groups,
  // so a row costs few instructions besides its MACs; SMLAD wraps, so the
  // accumulators start at the bias.
#pragma GCC unroll 8
  for (int t = 0; t < NB; ++t) acc[t] = bias;
  auto group = [&]() { PackedGroup<NB>::Step(&w, &x, acc); };
  constexpr int32_t kBlock = NB >= kTokenBatch ? 8 : 4;  // groups per loop pass
  const int8_t* block_end = w + (n & -(4 * kBlock));
  while (w != block_end) {
    group();
    group();
    group();
    group();
    if (kBlock == 8) {
      group();
      group();
      group();
      group();
    }
  }
  switch ((n >> 2) & (kBlock - 1)) {  // the remaining groups, one jump
    case 7: group(); __attribute__((fallthrough));
    case 6: group(); __attribute__((fallthrough));
    case 5: group(); __attribute__((fallthrough));
    case 4: group(); __attribute__((fallthrough));
    case 3: group(); __attribute__((fallthrough));
    case 2: group(); __attribute__((fallthrough));
    case 1: group(); __attribute__((fallthrough));
    default: break;
  }
  for (int32_t c = 0; c < (n & 3); ++c, ++w) {
#pragma GCC unroll 8
    for (int t = 0; t < NB; ++t) acc[t] = WrapAdd(acc[t], *w * x[t * 4 + PackedIndex(1, 0, c)]);
  }
#pragma GCC unroll 8
  for (int t = 0; t < NB; ++t) dots[t] = acc[t];
#else
#pragma GCC unroll 8
  for (int t = 0; t < NB; ++t) acc[t] = 0;
  const int32_t groups = n >> 2;
  for (int32_t g = 0; g < groups; ++g, w += 4) {
#pragma GCC unroll 8
    for (int t = 0; t < NB; ++t, x += 4) {
      acc[t] += w[0] * x[0] + w[2] * x[1] + w[1] * x[2] + w[3] * x[3];
    }
  }
  for (int32_t c = groups * 4; c < n; ++c, ++w) {
#pragma GCC unroll 8
    for (int t = 0; t < NB; ++t) acc[t] += *w * x[t * 4 + PackedIndex(1, 0, c & 3)];
  }
#pragma GCC unroll 8
  for (int t = 0; t < NB; ++t) dots[t] = WrapAdd(bias, acc[t]);
#endif
}

template <int NB>
void DotRowsPackedN(const int8_t* w, int32_t stride, int32_t n, const int32_t* bias,
                    const int16_t* x, int32_t rows, int32_t* acc) {
  for (int32_t r = 0; r < rows; ++r, w += stride, acc += NB) {
    DotPackedN<NB>(w, x, n, bias == nullptr ? 0 : bias[r], acc);
  }
}

#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
template <>
void DotRowsPackedN<8>(const int8_t* w, int32_t stride, int32_t n, const int32_t* bias,
                       const int16_t* x, int32_t rows, int32_t* acc) {
  const int32_t whole = n & -4;
  const int16_t* tail = x + 8 * whole;
  for (int32_t r = 0; r < rows; ++r, w += stride, acc += 8) {
    DotPackedGroups8(w, x, n, bias == nullptr ? 0 : bias[r], acc);
    for (int32_t c = 0; c < (n & 3); ++c) {
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) {
        acc[t] = WrapAdd(acc[t], w[whole + c] * tail[t * 4 + PackedIndex(1, 0, c)]);
      }
    }
  }
}
#endif

// 8 tokens outside DotRowsPacked, whose registers stay those of 1 to 4.
__attribute__((noinline)) void DotRowsPacked8(const int8_t* w, int32_t stride, int32_t n,
                                              const int32_t* bias, const int16_t* x, int32_t rows,
                                              int32_t* acc) {
  DotRowsPackedN<8>(w, stride, n, bias, x, rows, acc);
}

}  // namespace

void DotRowsPacked(const int8_t* w, int32_t stride, int32_t n, const int32_t* bias,
                   const int16_t* x, int32_t nb, int32_t rows, int32_t* acc) {
  static_assert(kTokenBatch == 4 && kMaxTokenBatch == 8, "DotRowsPacked instantiates 1..4 and 8 tokens");
  switch (nb) {
    case 8: DotRowsPacked8(w, stride, n, bias, x, rows, acc); break;
    case 4: DotRowsPackedN<4>(w, stride, n, bias, x, rows, acc); break;
    case 3: DotRowsPackedN<3>(w, stride, n, bias, x, rows, acc); break;
    case 2: DotRowsPackedN<2>(w, stride, n, bias, x, rows, acc); break;
    default: DotRowsPackedN<1>(w, stride, n, bias, x, rows, acc); break;
  }
}

void LinearFirstFactorPacked(const Linear& layer, const int16_t* x, int32_t nb, int16_t* t) {
  ForEachRowPacked(layer.v, x, nb, 0, layer.rank, [&](int32_t o, const int32_t* acc) {
    const RequantRow rq(layer.v.rq + 2 * o);
    int16_t* out = t + PackedIndex(nb, 0, o);
    for (int32_t k = 0; k < nb; ++k) out[4 * k] = (int16_t)rq.S8(acc[k], layer.t_zp);
  });
}

void LinearQuantRows(const LinearFactor& f, const int8_t* x, int32_t begin, int32_t end,
                     int32_t z_out, int8_t* y) {
  ForEachAcc(f, x, begin, end, [&](int32_t o, int32_t acc) {
    y[o - begin] =
        (int8_t)mcuf_sat8((int64_t)z_out + mcuf_mbqm(acc, f.rq[2 * o], f.rq[2 * o + 1]));
  });
}

const int8_t* LinearLastInput(const Linear& layer, const int8_t* x, int8_t* t) {
  if (layer.rank == 0) return x;
  LinearQuantRows(layer.v, x, 0, layer.rank, layer.t_zp, t);
  return t;
}


namespace {

// One token's LayerNorm statistics (SPEC 1.2): h[c] comes from
// d = channels * x[c] - sum and inv = 2^46 / den.
struct LnStats {
  int32_t neg_sum;
  int32_t inv_low;    // inv = inv_high * 2^32 + inv_low, inv_low signed,
  uint32_t inv_high;  // so d * inv is one MUL and one SMLAL
};

inline __attribute__((always_inline)) LnStats LayerNormStats(const int8_t* x, int32_t channels,
                                                              int64_t eps) {
  // sum_c d^2 with d = channels * x[c] - sum equals channels * (channels * sum_sq - sum^2)
  // (channels <= 65535: every term fits int64; |d| <= 65535 * 255 fits int32).
  int32_t sum = 0, sum_sq = 0;
  int32_t c = 0;
#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
  for (const int8_t* p = x; c + 3 < channels; c += 4) {
    const int32_t x4 = arm_nn_read_s8x4_ia(&p);
    const int32_t even = SXTB16(x4), odd = SXTB16_RORn((uint32_t)x4, 8);
    sum = SMLAD(even, 0x00010001, SMLAD(odd, 0x00010001, sum));
    sum_sq = SMLAD(even, even, SMLAD(odd, odd, sum_sq));
  }
#endif
  for (; c < channels; ++c) {
    sum += x[c];
    sum_sq += x[c] * x[c];
  }
  const uint64_t sum_d2 =
      (uint64_t)((int64_t)channels * ((int64_t)channels * sum_sq - (int64_t)sum * sum));
  const uint64_t var = sum_d2 / (uint64_t)channels + (uint64_t)eps;
  uint64_t den = mcuf_isqrt64(var);
  if (den < 1) den = 1;
  const int64_t inv = ((int64_t)1 << 46) / (int64_t)den;
  const int32_t inv_low = (int32_t)(uint32_t)inv;
  return LnStats{-sum, inv_low, (uint32_t)((inv - inv_low) >> 32)};
}

// (d * inv + 2^29) >> 30 of SPEC 1.2 for x_c * channels.
inline int32_t LnNormalized(const LnStats& st, int32_t x_times_channels) {
  const int32_t d = x_times_channels + st.neg_sum;
  uint32_t low = UINT32_C(1) << 29, high = (uint32_t)d * st.inv_high;
#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
  __asm__("smlal %0, %1, %2, %3" : "+r"(low), "+r"(high) : "r"(d), "r"(st.inv_low));  // one SMLAL
#else
  const uint64_t sum64 = ((uint64_t)high << 32 | low) + (uint64_t)((int64_t)d * st.inv_low);
  low = (uint32_t)sum64;
  high = (uint32_t)(sum64 >> 32);
#endif
  return (int32_t)((low >> 30) | (high << 2));
}

// h = sat8(sat10(sat32(scaled + b_c)) + z_h), scaled = MBQM(n, m_c, s_c) of the
// channel's row (m_c, s_c, b_c), which Prepare checked.
inline int32_t LnOut(int32_t scaled, int32_t bias, int32_t z_h) {
  return SatBits<8>(SatBits<10>(SatAdd32(scaled, bias)) + z_h);
}

// MBQM(v, m, shift) for a row Prepare accepted (RequantRow for one value):
// the shifts from bit operations, so GCC computes one product, not both
// branches' products.
inline int32_t MbqmOnce(int32_t v, int32_t m, int32_t shift) {
  const int32_t sign = shift >> 31;
  const int32_t left = shift & ~sign, right = -shift & sign;
  const int32_t shifted = (int32_t)((uint32_t)v << left);
  const int32_t high = (int32_t)(((int64_t)shifted * m + ((int64_t)1 << 30)) >> 31);
  const int32_t mask = (int32_t)((UINT32_C(1) << right) - 1u);
  const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)high >> 31);
  return (high >> right) + ((high & mask) > threshold ? 1 : 0);
}

}  // namespace

void LayerNorm(const int8_t* x, int32_t channels, const int32_t* ln, int64_t eps, int32_t z_h,
               int8_t* h) {
  const LnStats st = LayerNormStats(x, channels, eps);
  for (int32_t c = 0; c < channels; ++c) {
    const int32_t* row = ln + 3 * c;
    h[c] = (int8_t)LnOut(MbqmOnce(LnNormalized(st, x[c] * channels), row[0], row[1]), row[2], z_h);
  }
}

void LayerNormPacked(const int8_t* x, int32_t nb, int32_t channels, const int32_t* ln,
                     int64_t eps, int32_t z_h, int16_t* packed) {
  LnStats st[kMaxTokenBatch];
  for (int32_t k = 0; k < nb; ++k) st[k] = LayerNormStats(x + k * channels, channels, eps);
  // Channel by channel: the row's constants once for the nb tokens.
  for (int32_t c = 0; c < channels; ++c) {
    const int32_t* row = ln + 3 * c;
    const RequantRow rq(row);
    const int32_t bias = row[2];
    int16_t* out = packed + PackedIndex(nb, 0, c);
    const int8_t* xc = x + c;
    for (int32_t k = 0; k < nb; ++k, xc += channels) {
      out[4 * k] = (int16_t)LnOut(rq.Mbqm(LnNormalized(st[k], *xc * channels)), bias, z_h);
    }
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

namespace {

// Context sums of the columns c and c + 1 (c + 1 < columns) with int32 probabilities.
void ContextPair(const int32_t* p, int32_t n, const int8_t* v, int32_t stride, int32_t* sum0,
                 int32_t* sum1) {
  int32_t acc0 = 0, acc1 = 0;
  for (int32_t j = 0; j < n; ++j, v += stride) {
    acc0 += p[j] * v[0];
    acc1 += p[j] * v[1];
  }
  *sum0 = acc0;
  *sum1 = acc1;
}

#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
// The same with the probabilities packed as int16 pairs (all below 32768):
// one SMLAD per two tokens and column.
void ContextPairPacked(const int16_t* p, int32_t n, const int8_t* v, int32_t stride,
                       int32_t* sum0, int32_t* sum1) {
  int32_t acc0 = 0, acc1 = 0;
  int32_t j = 0;
  for (; j + 1 < n; j += 2, v += 2 * stride) {
    int32_t p2;
    memcpy(&p2, p + j, sizeof(p2));
    acc0 = SMLAD(p2, PKHBT((int32_t)v[0], (int32_t)v[stride], 16), acc0);
    acc1 = SMLAD(p2, PKHBT((int32_t)v[1], (int32_t)v[stride + 1], 16), acc1);
  }
  if (j < n) {
    acc0 += p[j] * v[0];
    acc1 += p[j] * v[1];
  }
  *sum0 = acc0;
  *sum1 = acc1;
}
#endif

}  // namespace

void AttentionContext(int32_t* p, int32_t n, const int8_t* v, int32_t stride, int32_t columns,
                      int32_t mult, int32_t shift, int8_t* ctx) {
  auto store = [&](int32_t c, int32_t sum) {
    ctx[c] = (int8_t)mcuf_sat8(mcuf_mbqm(sum, mult, shift));
  };
  int32_t c = 0;
#if defined(CMSIS_NN) && defined(ARM_MATH_DSP)
  int32_t max_p = 0;
  for (int32_t j = 0; j < n; ++j) max_p = p[j] > max_p ? p[j] : max_p;
  if (max_p < 32768 && columns > 1) {
    // Pack in place, front to back: p16[j] only overwrites p[j / 2], already read.
    int16_t* p16 = reinterpret_cast<int16_t*>(p);
    for (int32_t j = 0; j < n; ++j) p16[j] = (int16_t)p[j];
    for (; c + 1 < columns; c += 2) {
      int32_t sum0, sum1;
      ContextPairPacked(p16, n, v + c, stride, &sum0, &sum1);
      store(c, sum0);
      store(c + 1, sum1);
    }
    if (c < columns) {
      int32_t sum = 0;
      for (int32_t j = 0; j < n; ++j) sum += p16[j] * v[j * stride + c];
      store(c, sum);
    }
    return;
  }
#endif
  for (; c + 1 < columns; c += 2) {
    int32_t sum0, sum1;
    ContextPair(p, n, v + c, stride, &sum0, &sum1);
    store(c, sum0);
    store(c + 1, sum1);
  }
  if (c < columns) {
    int32_t sum = 0;
    for (int32_t j = 0; j < n; ++j) sum += p[j] * v[j * stride + c];
    store(c, sum);
  }
}

void LinearResidual(const LinearFactor& f, const int8_t* in, const int8_t* x, int32_t z_x,
                    int32_t res_mult, int32_t res_shift, int32_t z_y, int8_t* y) {
  // y[c] is written after x[c] is read, and `in` is never y: y may equal x.
  ForEachAcc(f, in, 0, f.out, [&](int32_t c, int32_t acc) {
    y[c] = ResidualOut(acc, f.rq + 2 * c, x[c], z_x, res_mult, res_shift, z_y);
  });
}

}  // namespace mcuformer
