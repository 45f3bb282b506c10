"""Integer helpers of tflm_ops/SPEC.md section 0, in numpy (int64 throughout).

The C twins live in tflm_ops/src/mcuf_fixedpoint.h; tests hold them equal.
Every function accepts arrays and broadcasts.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def round_half_away(v: float) -> int:
    """C's std::round / TfLiteRound for one float."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def quantize_multiplier(real: float) -> tuple:
    """TFLM QuantizeMultiplier: real ~= m * 2^(s - 31), |m| in [2^30, 2^31)."""
    real = float(real)
    if real == 0.0 or not math.isfinite(real):
        if not math.isfinite(real):
            raise ValueError(f"cannot quantize multiplier {real}")
        return 0, 0
    frac, shift = math.frexp(real)
    q = round_half_away(frac * (1 << 31))
    if abs(q) == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return (INT32_MAX if q > 0 else -INT32_MAX), 30
    return q, shift


def quantize_multipliers(reals) -> np.ndarray:
    """Requant table `[n, 2]` of (multiplier, shift) for an array of reals."""
    reals = np.asarray(reals, np.float64).reshape(-1)
    return np.array([quantize_multiplier(r) for r in reals], np.int64).reshape(-1, 2).astype(np.int32)


def _trunc_div_pow2(num: np.ndarray, bits: int) -> np.ndarray:
    """C's truncating num / 2^bits for int64 num (|num| < 2^62): a negative num is biased
    by 2^bits - 1 before the flooring shift, in place on a temporary."""
    out = (num >> 63) & ((1 << bits) - 1)
    out += num
    out >>= bits
    return out


def srdhm(a, b) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = (ab >> 63) & (1 - (1 << 31))     # 0, or 1 - 2^31 when ab < 0: nudge 2^30 or 1 - 2^30
    nudge += 1 << 30
    nudge += ab
    out = _trunc_div_pow2(nudge, 31)
    if (a == INT32_MIN).any() and (b == INT32_MIN).any():
        out = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, out)
    return out


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    if exponent.ndim == 0 and int(exponent) == 0:
        return x
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def mbqm(x, m, s) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(x, m, s), TFLM reference semantics."""
    x = np.asarray(x, np.int64)
    s = np.asarray(s, np.int64)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    a = x << left
    if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
        raise OverflowError("MBQM input overflows int32 after the left shift")
    return rounding_divide_by_pot(srdhm(a, m), right)


def mbqm_rq(acc, rq) -> np.ndarray:
    """MBQM with a requant table `[n, 2]` broadcast along the last axis of acc."""
    rq = np.asarray(rq, np.int64)
    return mbqm(acc, rq[:, 0], rq[:, 1])


def sat8(v) -> np.ndarray:
    return np.clip(np.asarray(v, np.int64), -128, 127)


def rdiv(n, d) -> np.ndarray:
    """Round-half-away-from-zero division of int64 n by positive int64 d."""
    n = np.asarray(n, np.int64)
    d = np.asarray(d, np.int64)
    return np.where(n >= 0, (n + d // 2) // d, -((-n + d // 2) // d))


def isqrt(v) -> np.ndarray:
    """Floor square root of non-negative int64 values (< 2^62)."""
    v = np.asarray(v, np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    r = np.where(r * r > v, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return np.where((r + 1) * (r + 1) <= v, r + 1, r)


def _exp2_table() -> np.ndarray:
    return np.array([round_half_away(32768.0 * 2.0 ** (-f / 256.0)) for f in range(256)], np.int64)


EXP2_Q15 = _exp2_table()
