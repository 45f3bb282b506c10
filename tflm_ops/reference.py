"""Numpy reference of the MCUFormer custom ops, integer-exact to tflm_ops/SPEC.md.

This is the oracle the C kernels are held to (zero LSB difference). Every op
function has the signature

    op(inputs, options, in_zp, out_zp) -> int8 output

where `inputs` is the op's tensor list in SPEC order (numpy arrays), `options`
the dict of its FlexBuffer options (checked with contract.py: a ValueError
names the field the kernels' Prepare would reject), `in_zp`/`out_zp` the zero
points of its graph input and output. Activations carry a leading batch axis `N` where the
TFLite tensor has its `1` (image `[N, H, W, C]`, tokens `[N, T, E]`, logits
`[N, K]`), so many images and all tokens run at once.

Integer products are summed with float64 matrix products: every operand is an
integer below 2^16 in magnitude and every sum below 2^53, so BLAS computes the
exact integer result in any summation order (checked in `_exact_matmul`).
"""
from __future__ import annotations

import numpy as np

from .contract import POOL_CLS, POOL_SEQ, check_options, linear_tensor_count
from .fixedpoint import EXP2_Q15, isqrt, mbqm, mbqm_rq, sat8

_EXACT_LIMIT = float(1 << 53)


def _exact_matmul(a, b) -> np.ndarray:
    """a @ b for integer arrays, exact (see module docstring)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound >= _EXACT_LIMIT:
        raise OverflowError("integer matmul could exceed float64's exact range")
    af, bf = a.astype(np.float64), b.astype(np.float64)
    if b.ndim == 2:                  # one large 2-D product is far faster in BLAS than a stack
        out = np.ascontiguousarray(af.reshape(-1, a.shape[-1])) @ np.ascontiguousarray(bf)
        return np.rint(out).astype(np.int64).reshape(*a.shape[:-1], b.shape[-1])
    return np.rint(af @ bf).astype(np.int64)


# ---- 1.1 linear ---------------------------------------------------------------------

def linear_acc(x, w, bias) -> np.ndarray:
    """acc[..., o] = bias[o] + sum_i x[..., i] * W[o, i] (int32 values in int64)."""
    return np.asarray(bias, np.int64) + _exact_matmul(x, np.asarray(w).T)


def linear_q(x, w, bias, rq, z_out) -> np.ndarray:
    return sat8(z_out + mbqm_rq(linear_acc(x, w, bias), rq))


def linear_last_acc(x, tensors, t_zp) -> tuple:
    """(accumulator of the last factor, its rq) of a full (3) or low-rank (6) linear."""
    if len(tensors) == 6:
        v, bias_v, rq_v, w, bias, rq = tensors
        x = linear_q(x, v, bias_v, rq_v, t_zp)
    elif len(tensors) == 3:
        w, bias, rq = tensors
    else:
        raise ValueError(f"a linear layer has 3 or 6 tensors, got {len(tensors)}")
    return linear_acc(x, w, bias), np.asarray(rq, np.int64)


def linear(x, tensors, t_zp, z_out) -> np.ndarray:
    acc, rq = linear_last_acc(x, tensors, t_zp)
    return sat8(z_out + mbqm_rq(acc, rq))


# ---- 1.2 LayerNorm -----------------------------------------------------------------

def layer_norm(x, ln, ln_eps, z_h) -> np.ndarray:
    """Integer LayerNorm over the last axis; ln is [E, 3] rows (m_c, s_c, b_c)."""
    x = np.asarray(x, np.int64)
    ln = np.asarray(ln, np.int64)
    e = x.shape[-1]
    total = x.sum(-1, keepdims=True)
    d = e * x - total
    var = (d * d).sum(-1, keepdims=True) // e + int(ln_eps)
    den = np.maximum(isqrt(var), 1)
    inv = (np.int64(1) << 46) // den
    n = (d * inv + (1 << 29)) >> 30
    return sat8(z_h + mbqm(n, ln[:, 0], ln[:, 1]) + ln[:, 2])


# ---- 1.3 softmax -----------------------------------------------------------------

def softmax_q15(a, sm_mult, sm_shift) -> np.ndarray:
    """Q15 probabilities of integer scores `a` along the last axis."""
    a = np.asarray(a, np.int64)
    d = a.max(-1, keepdims=True) - a
    x = np.minimum(4095, (d * int(sm_mult) + (1 << (int(sm_shift) - 1))) >> int(sm_shift))
    e = EXP2_Q15[x & 255] >> (x >> 8)
    r = (np.int64(1) << 46) // e.sum(-1, keepdims=True)
    return (e * r + (1 << 30)) >> 31


# ---- 1.4 GELU and 1.5 residual -------------------------------------------------------

def gelu(a, lut) -> np.ndarray:
    return np.asarray(lut, np.int64)[np.asarray(a, np.int64) + 128]


def residual(acc, rq, x, z_x, z_y, res_mult, res_shift) -> np.ndarray:
    x = np.asarray(x, np.int64)
    return sat8(z_y + mbqm_rq(acc, rq) + mbqm(x - z_x, res_mult, res_shift))


# ---- 2. ops ------------------------------------------------------------------------

def patches(image, patch, kernel=None, pad_value=0) -> np.ndarray:
    """[N, H, W, C] -> [N, Gh*Gw, K*K*C]: the K x K window of stride P of patch (r, c) at token
    r*Gw + c, in (ky, kx, ch) order, starting (K-P)//2 pixels above and left of the patch; pixels
    outside the image are `pad_value` (SPEC 2.1). K = P (the default) is the plain patch split."""
    n, h, w, c = image.shape
    gh, gw = h // patch, w // patch
    kernel = patch if kernel is None else int(kernel)
    if kernel == patch:
        grid = np.asarray(image).reshape(n, gh, patch, gw, patch, c).transpose(0, 1, 3, 2, 4, 5)
        return grid.reshape(n, gh * gw, patch * patch * c)
    pad, after = (kernel - patch) // 2, kernel - patch - (kernel - patch) // 2
    padded = np.pad(np.asarray(image), ((0, 0), (pad, after), (pad, after), (0, 0)), constant_values=pad_value)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel), axis=(1, 2))
    windows = windows[:, ::patch, ::patch][:, :gh, :gw]          # [N, Gh, Gw, C, K, K]
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, gh * gw, kernel * kernel * c)


def patch_embed(inputs, options, in_zp, out_zp) -> np.ndarray:
    check_options("MCUF_PATCH_EMBED", options)
    image, w, bias, rq = inputs[:4]
    has_pos, has_cls = int(options["has_pos"]), int(options["has_cls"])
    acc = linear_acc(patches(image, int(options["patch"]), int(options["kernel"]), in_zp), w, bias)
    pos_term = 0
    if has_pos:
        pos_term = mbqm(np.asarray(inputs[4][:acc.shape[1]], np.int64) - int(options["pos_zp"]),
                        int(options["pos_mult"]), int(options["pos_shift"]))
    tokens = sat8(out_zp + mbqm_rq(acc, rq) + pos_term)
    if int(options["relu"]):
        tokens = np.maximum(tokens, out_zp)
    if has_cls:
        cls = np.broadcast_to(np.asarray(inputs[4 + has_pos], np.int64), (tokens.shape[0], 1, tokens.shape[2]))
        tokens = np.concatenate([tokens, cls], axis=1)
    return tokens.astype(np.int8)


def _block_output(features, last_linear, t_zp, x, in_zp, out_zp, options) -> np.ndarray:
    """Residual epilogue (1.5) of a block's last linear on `features`, with the block input x."""
    acc, rq = linear_last_acc(features, last_linear, t_zp)
    return residual(acc, rq, x, in_zp, out_zp, int(options["res_mult"]),
                    int(options["res_shift"])).astype(np.int8)


def attention(inputs, options, in_zp, out_zp) -> np.ndarray:
    check_options("MCUF_ATTENTION", options)
    x, ln = inputs[0], inputs[1]
    n_qkv = linear_tensor_count(int(options["qkv_rank"]))
    l_qkv, l_proj = inputs[2:2 + n_qkv], inputs[2 + n_qkv:]
    heads, dim = int(options["heads"]), int(options["qkv_dim"])
    n, t, _ = x.shape
    h = layer_norm(x, ln, options["ln_eps"], int(options["ln_zp"]))
    qkv = linear(h, l_qkv, int(options["qkv_t_zp"]), 0)

    def split(z):                                        # [N, T, D] -> [N, heads, T, D/heads]
        return z.reshape(n, t, heads, dim // heads).transpose(0, 2, 1, 3)

    q, k, v = (split(qkv[..., i * dim:(i + 1) * dim]) for i in range(3))
    p = softmax_q15(_exact_matmul(q, k.transpose(0, 1, 3, 2)), options["sm_mult"], options["sm_shift"])
    ctx = sat8(mbqm(_exact_matmul(p, v), int(options["ctx_mult"]), int(options["ctx_shift"])))
    ctx = ctx.transpose(0, 2, 1, 3).reshape(n, t, dim)
    return _block_output(ctx, l_proj, int(options["proj_t_zp"]), x, in_zp, out_zp, options)


def mlp(inputs, options, in_zp, out_zp) -> np.ndarray:
    check_options("MCUF_MLP", options)
    x, ln = inputs[0], inputs[1]
    n_fc1 = linear_tensor_count(int(options["fc1_rank"]))
    l_fc1, lut, l_fc2 = inputs[2:2 + n_fc1], inputs[2 + n_fc1], inputs[3 + n_fc1:]
    h = layer_norm(x, ln, options["ln_eps"], int(options["ln_zp"]))
    g = gelu(linear(h, l_fc1, int(options["fc1_t_zp"]), int(options["fc1_zp"])), lut)
    return _block_output(g, l_fc2, int(options["fc2_t_zp"]), x, in_zp, out_zp, options)


def head(inputs, options, in_zp, out_zp) -> np.ndarray:
    check_options("MCUF_HEAD", options)
    x, ln = inputs[0], inputs[1]
    z_h = int(options["ln_zp"])
    h = layer_norm(x, ln, options["ln_eps"], z_h)
    pool = int(options["pool"])
    if pool == POOL_CLS:
        pooled = h[:, -1, :]
    else:
        if pool == POOL_SEQ:             # Q15 token weights of the scores h . score (SPEC 2.4)
            scores = _exact_matmul(h, np.asarray(inputs[5], np.int64)[:, None])[..., 0]
            weights = softmax_q15(scores, options["sm_mult"], options["sm_shift"])
            total = _exact_matmul(weights[:, None, :], h - z_h)[:, 0, :]
        else:
            total = (h - z_h).sum(axis=1)
        pooled = sat8(int(options["pool_zp"]) + mbqm(total, int(options["pool_mult"]),
                                                      int(options["pool_shift"])))
    return linear(pooled, inputs[2:5], 0, out_zp).astype(np.int8)


OPS = {
    "MCUF_PATCH_EMBED": patch_embed,
    "MCUF_ATTENTION": attention,
    "MCUF_MLP": mlp,
    "MCUF_HEAD": head,
}


def run_op(code: str, inputs, options, in_zp, out_zp) -> np.ndarray:
    return OPS[code](inputs, options, in_zp, out_zp)
