"""tflm_ops/reference.py: hand-checked cases of SPEC.md and properties of the ops."""
import math

import numpy as np
import pytest

from tflm_ops import contract
from tflm_ops import reference as R
from tflm_ops.fixedpoint import mbqm, quantize_multiplier, sat8

ONE = quantize_multiplier(1.0)            # (2^30, 1): MBQM(x, *ONE) == x


def rq_of(*reals):
    return np.array([quantize_multiplier(r) for r in reals], np.int32)


def test_linear_hand_case():
    x = np.array([[1, 2]])
    w = np.array([[1, 1], [2, -1]], np.int8)
    # acc = [13, 0]; 13 * 0.5 = 6.5 rounds away from zero to 7; z_out = -3
    assert R.linear_q(x, w, np.array([10, 0]), rq_of(0.5, 0.5), -3).tolist() == [[4, -3]]


def test_low_rank_linear_uses_intermediate_zero_point():
    x = np.array([[3, -1]])
    v, bias_v = np.array([[1, 1]], np.int8), np.array([0])
    u, bias_u = np.array([[1], [-1]], np.int8), np.array([0, 0])
    # t = sat8(5 + 2) = 7 with z_t = 5; U acts on the raw int8 t (the bias would fold -z_t * sum U)
    out = R.linear(x, [v, bias_v, rq_of(1.0), u, bias_u, rq_of(1.0, 1.0)], 5, 0)
    assert out.tolist() == [[7, -7]]


def test_layer_norm_hand_case():
    ln = np.array([[1 << 30, -15, 0], [1 << 30, -15, 5]], np.int32)      # gamma = 1 (in Q16), beta = (0, 5)
    # d = (2, -2), var = 4, den = 2, n = (+-65536): normalised (+-1) in Q16 -> +-1
    assert R.layer_norm(np.array([[1, -1]]), ln, 0, 2).tolist() == [[3, 6]]


def test_layer_norm_epsilon_hand_case():
    ln = np.array([[1 << 30, -15, 0], [1 << 30, -15, 5]], np.int32)
    # var = 4 + 56 = 60, den = 7, n = +-round(2^17 / 7) = +-18725; times 2^-16 = +-0.286 -> 0 both ways
    assert R.layer_norm(np.array([[1, -1]]), ln, 56, 2).tolist() == [[2, 7]]


def test_layer_norm_ignores_input_offset_and_is_per_token():
    rng = np.random.default_rng(0)
    x = rng.integers(-60, 60, (3, 5, 16))
    ln = np.stack([rng.integers(1 << 30, 1 << 31, 16), rng.integers(-14, -10, 16), rng.integers(-9, 9, 16)], 1)
    out = R.layer_norm(x, ln, 100, -4)
    assert np.array_equal(out, R.layer_norm(x + 7, ln, 100, -4))
    assert np.array_equal(out[1, 2], R.layer_norm(x[1, 2][None], ln, 100, -4)[0])


def test_softmax_hand_cases():
    assert R.softmax_q15(np.array([5, 5, 5, 5]), 1 << 30, 30).tolist() == [8192] * 4
    # scores 256 apart with M / 2^S = 1: exactly one octave -> (2/3, 1/3)
    assert R.softmax_q15(np.array([256, 0]), 1 << 30, 30).tolist() == [21845, 10923]
    # a gap beyond 16 octaves is clamped to x = 4095, whose EXP2 entry shifts to 0
    assert R.softmax_q15(np.array([0, -10 ** 6, -10 ** 6]), 1 << 30, 30).tolist() == [32768, 0, 0]


def test_softmax_close_to_float():
    rng = np.random.default_rng(1)
    a = rng.integers(-3000, 3000, (50, 40))
    scale = 0.002                                        # real score per integer unit
    m, s = quantize_multiplier(256.0 * scale / math.log(2.0))
    p = R.softmax_q15(a, m, 31 - s) / 32768.0
    f = np.exp(scale * (a - a.max(1, keepdims=True)))
    f /= f.sum(1, keepdims=True)
    assert np.abs(p - f).max() < 2e-3


def test_residual_identity_and_saturation():
    x = np.array([[-128, -5, 0, 100, 127]])
    acc = np.zeros((1, 5))
    y = R.residual(acc, np.zeros((5, 2), np.int64), x, -10, 20, *ONE)
    assert y.tolist() == sat8(x + 30).tolist()


def _one_hot_patch_embed(image, patch, cls=None, kernel=None, in_zp=-128, has_pos=1, relu=0):
    kernel = kernel or patch
    n_in = kernel * kernel * image.shape[-1]
    w = np.eye(n_in, dtype=np.int8)
    t = (image.shape[1] // patch) * (image.shape[2] // patch) + (cls is not None)
    inputs = [image, w, np.zeros(n_in, np.int32), np.tile(np.array(ONE, np.int32), (n_in, 1))]
    inputs += [np.zeros((t, n_in), np.int8)] * has_pos + ([cls] if cls is not None else [])
    options = {"version": 4, "patch": patch, "kernel": kernel, "has_cls": int(cls is not None), "patches_per_pass": 4,
               "has_pos": has_pos, "relu": relu, "pos_zp": 0, "pos_mult": 0, "pos_shift": 0}
    return R.patch_embed(inputs, options, in_zp, 0)


def test_stem_layer_without_position_embedding_clamps_at_the_zero_point():
    image = np.array([-5, 3, 0, -128, 127, -1, 2, 9], np.int8).reshape(1, 2, 2, 2)
    plain = _one_hot_patch_embed(image, 1, in_zp=0, has_pos=0)
    assert plain.reshape(-1).tolist() == image.reshape(-1).tolist()
    relu = _one_hot_patch_embed(image, 1, in_zp=0, has_pos=0, relu=1)
    assert relu.reshape(-1).tolist() == [0, 3, 0, 0, 127, 0, 2, 9]


def test_patch_embed_token_order():
    image = np.arange(32, dtype=np.int8).reshape(1, 4, 4, 2)
    tokens = _one_hot_patch_embed(image, 2)
    assert tokens.shape == (1, 4, 8)
    # token 1 = patch (row 0, col 1): image[0:2, 2:4, :] in (py, px, ch) order
    assert tokens[0, 1].tolist() == image[0, 0:2, 2:4, :].reshape(-1).tolist()
    assert tokens[0, 2].tolist() == image[0, 2:4, 0:2, :].reshape(-1).tolist()
    cls = np.array([9, -9, 1, 2, 3, 4, 5, 6], np.int8)
    with_cls = _one_hot_patch_embed(image, 2, cls)
    assert np.array_equal(with_cls[0, :4], tokens[0]) and with_cls[0, 4].tolist() == cls.tolist()


def test_conv_tokenizer_windows_overlap_and_pad_with_the_zero_point():
    image = np.arange(1, 37, dtype=np.int8).reshape(1, 6, 6, 1)          # pixel (y, x) = 6y + x + 1
    tokens = _one_hot_patch_embed(image, 2, kernel=5, in_zp=-7)          # pad 1 before, 2 after
    assert tokens.shape == (1, 9, 25)
    # token 0: rows -1..3, cols -1..3 (row -1 and col -1 padding); token 4 (1, 1): rows 1..5, cols 1..5
    assert tokens[0, 0].reshape(5, 5)[0].tolist() == [-7] * 5
    assert tokens[0, 0].reshape(5, 5)[1].tolist() == [-7, 1, 2, 3, 4]
    assert tokens[0, 4].reshape(5, 5).tolist() == (image[0, 1:6, 1:6, 0]).tolist()
    # token 8 (2, 2): rows 3..7, cols 3..7; rows/cols 6 and 7 padding
    last = tokens[0, 8].reshape(5, 5)
    assert last[:3, :3].tolist() == image[0, 3:6, 3:6, 0].tolist()
    assert (last[3:] == -7).all() and (last[:, 3:] == -7).all()
    two_channels = np.stack([image, -image], -1).reshape(1, 6, 6, 2)     # (ky, kx, ch) order
    assert _one_hot_patch_embed(two_channels, 2, kernel=3, in_zp=0)[0, 4, :4].tolist() == [15, -15, 16, -16]


def test_head_mean_pool_of_constant_tokens():
    ln = np.array([[1 << 30, -15, b] for b in (3, -2, 0)], np.int32)
    x = np.array([[[7, 7, 7], [1, 1, 1], [-4, -4, -4], [0, 0, 0]]])      # d = 0: LN gives z_h + b_c
    fc = [np.eye(3, dtype=np.int8), np.zeros(3, np.int32), np.tile(np.array(ONE, np.int32), (3, 1))]
    m, s = quantize_multiplier(1.0 / 4)
    options = {"version": 2, "pool": 0, "ln_eps": 0, "ln_zp": 5, "pool_zp": -1, "pool_mult": m, "pool_shift": s,
               "sm_mult": 1 << 30, "sm_shift": 1}
    assert R.head([x, ln] + fc, options, 0, 0).tolist() == [[2, -3, -1]]
    options.update(pool=1)                              # class token: pooled = LN(last token), zp z_h
    assert R.head([x, ln] + fc, options, 0, 0).tolist() == [[8, 3, 5]]


def _seq_head(x, score, sm_shift, pool_real):
    """MCUF_HEAD pool seq on E = 2 tokens [v, -v]: LN gives z_h + sign(v) * [1, -1] (rows 2^30, -15: 0.5 * 2^-15
    of n = +-2^16), z_h 5, pool_zp -1, identity classifier."""
    ln = np.array([[1 << 30, -15, 0]] * 2, np.int32)
    fc = [np.eye(2, dtype=np.int8), np.zeros(2, np.int32), np.tile(np.array(ONE, np.int32), (2, 1))]
    m, s = quantize_multiplier(pool_real)
    options = {"version": 2, "pool": 2, "ln_eps": 0, "ln_zp": 5, "pool_zp": -1, "pool_mult": m, "pool_shift": s,
               "sm_mult": 1 << 30, "sm_shift": sm_shift}
    return R.head([np.array([x]), ln] + fc + [np.array(score, np.int8)], options, 0, 0).tolist()


def test_head_seq_pool_weights_tokens_by_softmax_of_scores():
    # scores a = 100 * h[0]: token 1 ([4, -4]) leads by 200; 200 * 2^30 / 2^20 caps x at 4095, e = 0 for the
    # others, so token 1 alone has weight 32768: pooled = -1 + [1, -1] with pool_mult 1/32768
    assert _seq_head([[-3, 3], [4, -4], [-1, 1]], [100, 0], 20, 1 / 32768) == [[0, -2]]
    # scores h[0]: a difference of 2, x = 2 * 2^30 / 2^23 = 256 (half), e = [32768, 16384], r = 2^46 // 49152,
    # p = [21845, 10923]; sum[0] = 21845 - 10923 = 10922, / 1024 = 10.67 -> 11; pooled = -1 + [11, -11]
    assert _seq_head([[4, -4], [-4, 4]], [1, 0], 23, 1 / 1024) == [[10, -12]]
    # equal scores (score 0): p = 32768 / 4 each, the mean: sum[0] = 8192 * (1 - 1 + 1 + 1) / 8192 = 2
    assert _seq_head([[4, -4], [-4, 4], [2, -2], [9, -9]], [0, 0], 20, 1 / 8192) == [[1, -3]]


def test_rejects_unknown_version():
    with pytest.raises(ValueError, match="version"):
        R.run_op("MCUF_HEAD", [], {"version": 1}, 0, 0)


def _random_linear(rng, n_in, n_out, rank):
    def factor(i, o):
        return [rng.integers(-127, 128, (o, i)).astype(np.int8), rng.integers(-3000, 3000, o).astype(np.int32),
                np.stack([rng.integers(1 << 30, 1 << 31, o), rng.integers(-12, -8, o)], 1).astype(np.int32)]
    return factor(n_in, rank) + factor(rank, n_out) if rank else factor(n_in, n_out)


def _random_ln(rng, e):
    return np.stack([rng.integers(1 << 30, 1 << 31, e), rng.integers(-13, -10, e), rng.integers(-9, 9, e)],
                    1).astype(np.int32)


# ---- attention and MLP against a scalar transcription of SPEC, in plain Python ints ----------
# Independent of reference.py and fixedpoint.py: every step below is SPEC's text for one value.

def _sat8(v):
    return min(127, max(-128, v))


def _mbqm(x, m, s):
    """SPEC 0: MultiplyByQuantizedMultiplier with C's truncating division."""
    a = x * 2 ** max(s, 0)
    right = max(-s, 0)
    if a == m == -(1 << 31):
        h = (1 << 31) - 1
    else:
        p = a * m + ((1 << 30) if a * m >= 0 else 1 - (1 << 30))
        h = abs(p) // (1 << 31) * (1 if p >= 0 else -1)
    mask = (1 << right) - 1
    return (h >> right) + (1 if (h & mask) > (mask >> 1) + (h < 0) else 0)


def _scalar_layer_norm(x, ln, eps, z_h):
    e = len(x)
    total = sum(int(v) for v in x)
    d = [e * int(v) - total for v in x]
    den = max(math.isqrt(sum(v * v for v in d) // e + eps), 1)
    inv = (1 << 46) // den
    return [_sat8(z_h + _mbqm((d[c] * inv + (1 << 29)) >> 30, int(ln[c, 0]), int(ln[c, 1])) + int(ln[c, 2]))
            for c in range(e)]


EXP2 = [int(math.floor(32768.0 * 2.0 ** (-f / 256.0) + 0.5)) for f in range(256)]


def _scalar_softmax(a, m, s):
    mx = max(a)
    x = [min(4095, ((mx - v) * m + (1 << (s - 1))) >> s) for v in a]
    e = [EXP2[v & 255] >> (v >> 8) for v in x]
    r = (1 << 46) // sum(e)
    return [(v * r + (1 << 30)) >> 31 for v in e]


def _scalar_linear_acc(x, tensors, t_zp, rows=None):
    """(accumulators of the last factor for `rows`, its rq), SPEC 1.1."""
    def acc(vec, w, b, sel):
        return [int(b[o]) + sum(int(vec[i]) * int(w[o, i]) for i in range(len(vec))) for o in sel]
    if len(tensors) == 6:
        v, bias_v, rq_v = tensors[:3]
        x = [_sat8(t_zp + _mbqm(a, int(rq_v[o, 0]), int(rq_v[o, 1])))
             for o, a in enumerate(acc(x, v, bias_v, range(len(bias_v))))]
        tensors = tensors[3:]
    w, b, rq = tensors
    rows = range(len(b)) if rows is None else rows
    return acc(x, w, b, rows), [(int(rq[o, 0]), int(rq[o, 1])) for o in rows]


def _scalar_linear(x, tensors, t_zp, z_out, rows=None):
    accs, rq = _scalar_linear_acc(x, tensors, t_zp, rows)
    return [_sat8(z_out + _mbqm(a, m, s)) for a, (m, s) in zip(accs, rq)]


def _scalar_residual(x, tensors, t_zp, token, zx, zy, o):
    accs, rq = _scalar_linear_acc(x, tensors, t_zp)
    return [_sat8(zy + _mbqm(a, m, s) + _mbqm(int(token[c]) - zx, o["res_mult"], o["res_shift"]))
            for c, (a, (m, s)) in enumerate(zip(accs, rq))]


def _scalar_attention(x, inputs, o, zx, zy):
    n_qkv = contract.linear_tensor_count(o["qkv_rank"])
    ln, lqkv, lproj = inputs[1], inputs[2:2 + n_qkv], inputs[2 + n_qkv:]
    t, dim, heads = len(x), o["qkv_dim"], o["heads"]
    hd = dim // heads
    norm = [_scalar_layer_norm(x[j], ln, o["ln_eps"], o["ln_zp"]) for j in range(t)]
    keys = [_scalar_linear(norm[j], lqkv, o["qkv_t_zp"], 0, range(dim, 2 * dim)) for j in range(t)]
    vals = [_scalar_linear(norm[j], lqkv, o["qkv_t_zp"], 0, range(2 * dim, 3 * dim)) for j in range(t)]
    y = []
    for i in range(t):
        q = _scalar_linear(norm[i], lqkv, o["qkv_t_zp"], 0, range(dim))
        ctx = []
        for h in range(heads):
            cols = range(h * hd, (h + 1) * hd)
            p = _scalar_softmax([sum(q[c] * keys[j][c] for c in cols) for j in range(t)], o["sm_mult"], o["sm_shift"])
            ctx += [_sat8(_mbqm(sum(p[j] * vals[j][c] for j in range(t)), o["ctx_mult"], o["ctx_shift"]))
                    for c in cols]
        y.append(_scalar_residual(ctx, lproj, o["proj_t_zp"], x[i], zx, zy, o))
    return y


@pytest.mark.parametrize("qkv_rank,proj_rank", [(0, 0), (3, 2)])
def test_attention_matches_scalar_spec_transcription(qkv_rank, proj_rank):
    rng = np.random.default_rng(qkv_rank)
    e, dim, heads, t = 8, 8, 2, 5
    inputs = [rng.integers(-128, 128, (2, t, e)).astype(np.int8), _random_ln(rng, e)]
    inputs += _random_linear(rng, e, 3 * dim, qkv_rank) + _random_linear(rng, dim, e, proj_rank)
    m, s = quantize_multiplier(0.05)
    cm, cs = quantize_multiplier(1.0 / 32768)
    rm, rs = quantize_multiplier(0.7)
    options = {"version": 2, "heads": heads, "qkv_dim": dim, "qkv_rank": qkv_rank, "proj_rank": proj_rank,
               "tokens_per_pass": 4, "keep_t": 1, "ln_eps": 50, "ln_zp": 3, "qkv_t_zp": -2, "proj_t_zp": 4, "sm_mult": m, "sm_shift": 31 - s,
               "ctx_mult": cm, "ctx_shift": cs, "res_mult": rm, "res_shift": rs}
    y = R.attention(inputs, options, -3, 6)
    for n in range(2):
        assert y[n].tolist() == _scalar_attention(inputs[0][n], inputs, options, -3, 6)


def test_attention_is_permutation_equivariant():
    rng = np.random.default_rng(5)
    e, dim, t = 8, 8, 6
    inputs = [rng.integers(-128, 128, (1, t, e)).astype(np.int8), _random_ln(rng, e)]
    inputs += _random_linear(rng, e, 3 * dim, 0) + _random_linear(rng, dim, e, 0)
    m, s = quantize_multiplier(0.05)
    cm, cs = quantize_multiplier(1.0 / 32768)
    options = {"version": 2, "heads": 2, "qkv_dim": dim, "qkv_rank": 0, "proj_rank": 0, "tokens_per_pass": 8,
               "keep_t": 0, "ln_eps": 0, "ln_zp": 0,
               "qkv_t_zp": 0, "proj_t_zp": 0, "sm_mult": m, "sm_shift": 31 - s, "ctx_mult": cm, "ctx_shift": cs,
               "res_mult": ONE[0], "res_shift": ONE[1]}
    perm = rng.permutation(t)
    y = R.attention(inputs, options, 0, 0)
    y_perm = R.attention([inputs[0][:, perm]] + inputs[1:], options, 0, 0)
    assert np.array_equal(y[:, perm], y_perm)


@pytest.mark.parametrize("fc1_rank,fc2_rank", [(0, 0), (4, 3)])
def test_mlp_matches_scalar_spec_transcription(fc1_rank, fc2_rank):
    rng = np.random.default_rng(10 + fc1_rank)
    e, hidden, t = 6, 10, 3
    lut = rng.integers(-128, 128, 256).astype(np.int8)
    l_fc1, l_fc2 = _random_linear(rng, e, hidden, fc1_rank), _random_linear(rng, hidden, e, fc2_rank)
    x = rng.integers(-128, 128, (1, t, e)).astype(np.int8)
    ln = _random_ln(rng, e)
    rm, rs = quantize_multiplier(0.6)
    options = {"version": 1, "hidden": hidden, "fc1_rank": fc1_rank, "fc2_rank": fc2_rank, "ln_eps": 9,
               "ln_zp": -1, "fc1_t_zp": 2, "fc2_t_zp": -6, "fc1_zp": 7, "gelu_zp": -20,
               "res_mult": rm, "res_shift": rs}
    y = R.mlp([x, ln] + l_fc1 + [lut] + l_fc2, options, 1, -1)
    for i in range(t):
        h = _scalar_layer_norm(x[0, i], ln, 9, -1)
        g = [int(lut[a + 128]) for a in _scalar_linear(h, l_fc1, 2, 7)]
        assert y[0, i].tolist() == _scalar_residual(g, l_fc2, -6, x[0, i], 1, -1, options)


def test_scalar_helpers_hand_cases():
    """The transcription's own building blocks on values worked out by hand."""
    assert _mbqm(13, 1 << 30, 0) == 7                       # 13 * 0.5 = 6.5 -> 7 (away from zero)
    assert _mbqm(-13, 1 << 30, 0) == -6                     # -6.5: the doubling high mul rounds half up
    assert _mbqm(-100, 1 << 30, -2) == -13                  # -50 / 4 = -12.5: the shift rounds half away
    assert _mbqm(100, 1 << 30, -2) == 13                    # 100 * 0.5 / 4 = 12.5 -> 13
    assert _mbqm(3, 1 << 30, 2) == 6                        # 3 * 4 * 0.5
    assert _scalar_softmax([256, 0], 1 << 30, 30) == [21845, 10923]
    ln = np.array([[1 << 30, -15, 0], [1 << 30, -15, 5]])
    assert _scalar_layer_norm([1, -1], ln, 0, 2) == [3, 6]


# ---- options: the contract's validity rules ------------------------------------------------

@pytest.mark.parametrize("change,field", [
    ({"qkv_rank": 70000}, "'qkv_rank' is 70000"), ({"res_shift": 31}, "'res_shift' is 31"),
    ({"heads": 3}, "'qkv_dim' (8) is not a multiple of 'heads' (3)"), ({"ln_zp": True}, "'ln_zp' is not an integer"),
    ({"ctx_mult": 1 << 29}, "'ctx_mult', 'ctx_shift'"), ({"version": 1}, "'version' is 1"),
    ({"sm_shift": 0}, "'sm_shift' is 0, outside [1, 62]"), ({"tokens_per_pass": 6}, "'tokens_per_pass' is 6"),
    ({"keep_t": 2}, "'keep_t' is 2, outside [0, 1]")])
def test_attention_rejects_what_prepare_rejects_naming_the_field(change, field):
    options = {"version": 2, "heads": 2, "qkv_dim": 8, "qkv_rank": 0, "proj_rank": 0, "tokens_per_pass": 4,
               "keep_t": 0, "ln_eps": 0, "ln_zp": 0,
               "qkv_t_zp": 0, "proj_t_zp": 0, "sm_mult": 1 << 30, "sm_shift": 30, "ctx_mult": 1 << 30,
               "ctx_shift": 0, "res_mult": 1 << 30, "res_shift": 1, **change}
    with pytest.raises(ValueError) as raised:
        R.attention([np.zeros((1, 2, 8), np.int8)], options, 0, 0)
    assert str(raised.value).startswith("MCUF_ATTENTION: ") and field in str(raised.value), str(raised.value)
