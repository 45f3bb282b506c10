// Integer helpers of tflm_ops/SPEC.md section 0: the C twins of
// tflm_ops/fixedpoint.py. Plain C-compatible inline functions, no floating point.
#ifndef MCUFORMER_TFLM_OPS_MCUF_FIXEDPOINT_H_
#define MCUFORMER_TFLM_OPS_MCUF_FIXEDPOINT_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline int32_t mcuf_sat8(int64_t v) {
  return v < -128 ? -128 : (v > 127 ? 127 : (int32_t)v);
}

// SaturatingRoundingDoublingHighMul (gemmlowp / TFLM reference):
// (a*b + (a*b >= 0 ? 2^30 : 1 - 2^30)) / 2^31 with C's truncating division,
// which for every product equals floor((a*b + 2^30) / 2^31), computed here
// with one arithmetic shift (as CMSIS-NN does).
static inline int32_t mcuf_srdhm(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

// RoundingDivideByPOT for exponent in [0, 31].
static inline int32_t mcuf_rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((UINT32_C(1) << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

// TFLM's MultiplyByQuantizedMultiplier (reference, double rounding); shift in
// [-31, 30], positive = left. The converter guarantees x << left fits int32.
static inline int32_t mcuf_mbqm(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return mcuf_rounding_divide_by_pot(
      mcuf_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

// Floor square root of any uint64.
static inline uint64_t mcuf_isqrt64(uint64_t v) {
  uint64_t root = 0;
  uint64_t bit = (uint64_t)1 << 62;
  while (bit > v) bit >>= 2;
  while (bit != 0) {
    if (v >= root + bit) {
      v -= root + bit;
      root = (root >> 1) + bit;
    } else {
      root >>= 1;
    }
    bit >>= 2;
  }
  return root;
}

// RDIV: int64 division rounding half away from zero, d > 0.
static inline int64_t mcuf_rdiv(int64_t n, int64_t d) {
  return n >= 0 ? (n + d / 2) / d : -((-n + d / 2) / d);
}

// EXP2_Q15[f] = round(32768 * 2^(-f/256)), f = 0..255 (SPEC 1.3).
static const int32_t MCUF_EXP2_Q15[256] = {
    32768, 32679, 32591, 32503, 32415, 32327, 32240, 32153, 32066, 31979,
    31893, 31806, 31720, 31635, 31549, 31464, 31379, 31294, 31209, 31125,
    31041, 30957, 30873, 30790, 30706, 30623, 30541, 30458, 30376, 30293,
    30212, 30130, 30048, 29967, 29886, 29805, 29725, 29644, 29564, 29484,
    29405, 29325, 29246, 29167, 29088, 29009, 28931, 28852, 28774, 28697,
    28619, 28542, 28464, 28388, 28311, 28234, 28158, 28082, 28006, 27930,
    27855, 27779, 27704, 27629, 27554, 27480, 27406, 27332, 27258, 27184,
    27110, 27037, 26964, 26891, 26818, 26746, 26674, 26601, 26530, 26458,
    26386, 26315, 26244, 26173, 26102, 26031, 25961, 25891, 25821, 25751,
    25681, 25612, 25543, 25474, 25405, 25336, 25268, 25199, 25131, 25063,
    24995, 24928, 24860, 24793, 24726, 24659, 24593, 24526, 24460, 24394,
    24328, 24262, 24196, 24131, 24066, 24001, 23936, 23871, 23806, 23742,
    23678, 23614, 23550, 23486, 23423, 23359, 23296, 23233, 23170, 23108,
    23045, 22983, 22921, 22859, 22797, 22735, 22674, 22613, 22552, 22491,
    22430, 22369, 22309, 22248, 22188, 22128, 22068, 22009, 21949, 21890,
    21831, 21772, 21713, 21654, 21595, 21537, 21479, 21421, 21363, 21305,
    21247, 21190, 21133, 21076, 21019, 20962, 20905, 20849, 20792, 20736,
    20680, 20624, 20568, 20513, 20457, 20402, 20347, 20292, 20237, 20182,
    20127, 20073, 20019, 19965, 19911, 19857, 19803, 19750, 19696, 19643,
    19590, 19537, 19484, 19431, 19379, 19326, 19274, 19222, 19170, 19118,
    19066, 19015, 18963, 18912, 18861, 18810, 18759, 18708, 18658, 18607,
    18557, 18507, 18457, 18407, 18357, 18308, 18258, 18209, 18160, 18110,
    18061, 18013, 17964, 17915, 17867, 17819, 17770, 17722, 17674, 17627,
    17579, 17531, 17484, 17437, 17390, 17343, 17296, 17249, 17202, 17156,
    17109, 17063, 17017, 16971, 16925, 16879, 16834, 16788, 16743, 16697,
    16652, 16607, 16562, 16518, 16473, 16428,
};

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // MCUFORMER_TFLM_OPS_MCUF_FIXEDPOINT_H_
