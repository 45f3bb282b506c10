"""Post-training int8 quantization: every constant tflm_ops/SPEC.md names.

Input: the float weights (`float_model.read_weights`) and activation ranges
(`calibrate`: name -> (lo, hi), or QAT's learned ranges under the same
names). Output: a `QModel` whose ops the numpy reference and the C kernels run.
Weights are per-output-channel symmetric int8, activations per-tensor int8;
every requantization is checked so that MBQM's int32 input cannot overflow.
"""
from __future__ import annotations

import math

import numpy as np

from keras_supernet import functional as F
from common.errors import UserError
from memory_model.memory import attention_options, patches_per_pass
from tflm_ops import contract
from tflm_ops.fixedpoint import INT32_MAX, INT32_MIN, quantize_multiplier

from .calibrate import QParams, qparams
from .float_model import ACTIVATIONS, dense_kernel
from .qmodel import Op, QModel, Tensor, check_prepare

INPUT_QPARAMS = QParams(contract.INPUT_SCALE, contract.INPUT_ZERO_POINT)
SYMMETRIC_POINTS = (".q", ".k", ".v", ".ctx")


def clipped_ranges(observer, method: str, percentile: float) -> dict:
    """name -> (lo, hi) of every calibrated point by `method`; q, k, v and the context symmetric."""
    symmetric = [n for n in observer.lo if n.endswith(SYMMETRIC_POINTS)]
    return observer.ranges(method, percentile, symmetric)


def _round(v) -> np.ndarray:
    """Round half away from zero (C's round), elementwise."""
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _int32(v) -> np.ndarray:
    return np.clip(_round(v), INT32_MIN, INT32_MAX).astype(np.int32)


def _requant(real, max_abs_in, what) -> tuple:
    """QuantizeMultiplier(real), refusing a left shift that would overflow MBQM's int32."""
    m, s = quantize_multiplier(real)
    if s > 0 and int(max_abs_in) << s > INT32_MAX:
        raise UserError(f"{what}: requantization by {real:.3g} would overflow int32; the calibrated "
                        f"ranges are degenerate (recalibrate with more or other images)")
    return m, s


def _requant_table(reals, max_abs_in, what) -> np.ndarray:
    reals = np.broadcast_to(np.asarray(reals, np.float64), np.shape(max_abs_in))
    return np.array([_requant(r, b, what) for r, b in zip(reals, max_abs_in)], np.int32).reshape(-1, 2)


def quantize_weight(w_out_in, min_scale=1e-12) -> tuple:
    """Per-output-channel symmetric int8 weights and their scales (at least `min_scale`, per channel or one)."""
    w = np.asarray(w_out_in, np.float64)
    scale = np.maximum(np.abs(w).max(axis=1) / 127.0, min_scale)
    return np.clip(_round(w / scale[:, None]), -127, 127).astype(np.int8), scale


def bias_scale_floor(bias, s_in, n_in: int) -> np.ndarray:
    """The smallest weight scale per channel whose int32 bias, `bias / (s_in s_w)`, leaves the accumulator
    room for `n_in` products and the folded input zero point (each at most 128 x 127) without overflow: a
    nearly dead channel (a low-rank factor's column of tiny weights) with a real bias would otherwise
    saturate it."""
    room = INT32_MAX - 2 * 128 * 127 * n_in
    return np.maximum(np.abs(np.asarray(bias, np.float64)) / (s_in * room), 1e-12) if room > 0 else 1e-12


class _Builder:
    def __init__(self, arch, ranges):
        self.arch, self.ranges = arch, ranges
        self.tensors, self.ops = [], []

    def qp(self, name) -> QParams:
        if name not in self.ranges:
            raise UserError(f"no calibrated range for quantization point {name!r}")
        lo, hi = self.ranges[name]
        return qparams(lo, hi, name.endswith(SYMMETRIC_POINTS))

    def activation(self, name, shape, qp: QParams) -> int:
        self.tensors.append(Tensor(name, tuple(shape), "int8", None, [qp.scale], [qp.zero_point]))
        return len(self.tensors) - 1

    def const(self, name, data, dtype, scale=(), zero_point=()) -> int:
        data = np.ascontiguousarray(np.asarray(data).astype(dtype))
        self.tensors.append(Tensor(name, data.shape, np.dtype(dtype).name, data,
                                   [float(s) for s in scale], [int(z) for z in zero_point]))
        return len(self.tensors) - 1

    # ---- building blocks --------------------------------------------------------------
    def factor(self, name, w_in_out, bias, s_in, z_in, s_out) -> list:
        """One linear factor: W int8 [out, in], effective bias, requant table (SPEC 1.1)."""
        w_out_in = np.asarray(w_in_out).T
        bias = np.zeros(len(w_out_in)) if bias is None else bias
        wq, s_w = quantize_weight(w_out_in, bias_scale_floor(bias, s_in, w_out_in.shape[1]))
        bias_eff = _int32(_round(bias / (s_in * s_w)) - z_in * wq.astype(np.int64).sum(axis=1))
        acc_bound = np.abs(bias_eff.astype(np.int64)) + 128 * np.abs(wq.astype(np.int64)).sum(axis=1)
        rq = _requant_table(s_in * s_w / np.asarray(s_out, np.float64), acc_bound, f"{name} requant")
        return [self.const(f"{name}/W", wq, np.int8, s_w, [0] * len(s_w)),
                self.const(f"{name}/bias", bias_eff, np.int32),
                self.const(f"{name}/rq", rq, np.int32)]

    def linear(self, name, lin, s_in, z_in, s_out) -> tuple:
        """Tensor indices of a full or low-rank linear, and its intermediate zero point."""
        if "kernel" in lin:
            return self.factor(name, lin["kernel"], lin["bias"], s_in, z_in, s_out), 0
        t = self.qp(name.replace("/", ".") + ".t")
        first = self.factor(f"{name}/V", lin["v"], None, s_in, z_in, t.scale)
        return first + self.factor(f"{name}/U", lin["u"], lin["bias"], t.scale, t.zero_point, s_out), t.zero_point

    def layer_norm(self, name, norm, s_x, h: QParams) -> tuple:
        """(ln tensor index, ln_eps) of SPEC 1.2."""
        gamma, beta, epsilon = (*norm, F.LN_EPSILON)[:3]
        e = len(gamma)
        n_bound = np.full(e, int(2 * math.sqrt(e) * (1 << 16)) + 2)     # |d| / den < 2 sqrt(E)
        mult = _requant_table(gamma / (h.scale * 65536.0), n_bound, f"{name} LayerNorm")
        b = _int32(beta / h.scale)
        ln = np.concatenate([mult, b[:, None]], axis=1)
        eps = int(np.clip(_round(e * e * epsilon / (s_x * s_x)), 0, contract.LN_EPS_MAX))
        return self.const(f"{name}/ln", ln, np.int32), eps

    # ---- ops --------------------------------------------------------------------------
    def stem(self, j, w, x, out) -> None:
        """Stem layer j: a MCUF_PATCH_EMBED with ReLU and no position embedding (SPEC 3)."""
        kernel, stride, _, channels, _ = self.arch.stem_layers()[j]
        t_in, t_out = self.tensors[x], self.tensors[out]
        inputs = [x] + self.factor(f"stem{j}", w["kernel"].reshape(-1, channels), w["bias"], t_in.scale[0],
                                   t_in.zp, t_out.scale[0])
        self.ops.append(Op("MCUF_PATCH_EMBED", inputs, out, contract.make_options(
            "MCUF_PATCH_EMBED", patch=stride, kernel=kernel, has_cls=0, patches_per_pass=patches_per_pass(self.arch),
            has_pos=0, relu=1, pos_zp=0, pos_mult=0, pos_shift=0)))

    def patch_embed(self, w, image, out) -> None:
        a, t_in, t_out = self.arch, self.tensors[image], self.tensors[out]
        s_out, z_out = t_out.scale[0], t_out.zp
        pe = w["patch_embed"]
        n_patches, e = a.num_patches, a.embed_dim
        inputs = [image] + self.factor("patch_embed", pe["kernel"].reshape(-1, e), pe["bias"],
                                       t_in.scale[0], t_in.zp, s_out)
        pos = pe["pos"]
        pos_qp = qparams(pos[:n_patches].min(), pos[:n_patches].max(), False)
        pos_q = np.clip(_round(pos / pos_qp.scale) + pos_qp.zero_point, -128, 127)
        pos_mult, pos_shift = _requant(pos_qp.scale / s_out, 255, "patch_embed position")
        inputs.append(self.const("patch_embed/pos", pos_q, np.int8, [pos_qp.scale], [pos_qp.zero_point]))
        has_cls = pe["cls"] is not None
        if has_cls:
            cls = np.clip(_round((pe["cls"] + pos[-1]) / s_out) + z_out, -128, 127)
            inputs.append(self.const("patch_embed/cls", cls, np.int8, [s_out], [z_out]))
        self.ops.append(Op("MCUF_PATCH_EMBED", inputs, out, contract.make_options(
            "MCUF_PATCH_EMBED", patch=a.patch_size, kernel=a.kernel, has_cls=int(has_cls),
            patches_per_pass=patches_per_pass(a), has_pos=1, relu=0, pos_zp=pos_qp.zero_point, pos_mult=pos_mult,
            pos_shift=pos_shift)))

    @staticmethod
    def softmax_multiplier(name, real) -> tuple:
        """SPEC 1.3's (M, S) with M / 2^S ~= real (Q8 log2 units per score unit)."""
        m, exponent = quantize_multiplier(real)
        shift = 31 - exponent
        if not (contract.in_range("MCUF_ATTENTION", "sm_mult", m) and contract.in_range("MCUF_ATTENTION", "sm_shift", shift)):
            raise UserError(f"{name}: softmax scale {real:.3g} is out of range; recalibrate")
        return m, shift

    def _residual(self, x, y, name) -> tuple:
        return _requant(self.tensors[x].scale[0] / self.tensors[y].scale[0], 255, f"{name} residual")

    def attention(self, i, w, x, y) -> None:
        a, pre = self.arch, f"block{i}_attn"
        s_x = self.tensors[x].scale[0]
        dim, heads = a.qkv_dim[i], a.num_heads[i]
        h = self.qp(f"{pre}.h")
        ln, eps = self.layer_norm(pre, w["norm"], s_x, h)
        q, k, v, ctx = (self.qp(f"{pre}.{p}") for p in ("q", "k", "v", "ctx"))
        s_qkv = np.repeat([q.scale, k.scale, v.scale], dim)
        l_qkv, qkv_t_zp = self.linear(f"{pre}/qkv", w["qkv"], h.scale, h.zero_point, s_qkv)
        s_y = self.tensors[y].scale[0]
        l_proj, proj_t_zp = self.linear(f"{pre}/proj", w["proj"], ctx.scale, 0, s_y)
        sm_m, sm_shift = self.softmax_multiplier(pre, 256.0 * q.scale * k.scale / (math.sqrt(dim // heads)
                                                                                   * math.log(2.0)))
        # the Q15 probabilities of a row sum to at most 32768 + T (rounding)
        ctx_mult, ctx_shift = _requant(v.scale / (32768.0 * ctx.scale), 128 * (32768 + a.num_tokens),
                                       f"{pre} context")
        res_mult, res_shift = self._residual(x, y, pre)
        self.ops.append(Op("MCUF_ATTENTION", [x, ln] + l_qkv + l_proj, y, contract.make_options(
            "MCUF_ATTENTION", heads=heads, qkv_dim=dim, qkv_rank=a.qkv_rank[i], proj_rank=a.proj_rank[i],
            **attention_options(a, i), ln_eps=eps, ln_zp=h.zero_point, qkv_t_zp=qkv_t_zp, proj_t_zp=proj_t_zp, sm_mult=sm_m,
            sm_shift=sm_shift, ctx_mult=ctx_mult, ctx_shift=ctx_shift, res_mult=res_mult, res_shift=res_shift)))

    def mlp(self, i, w, x, y) -> None:
        a, pre = self.arch, f"block{i}_mlp"
        s_x = self.tensors[x].scale[0]
        h, act, g = self.qp(f"{pre}.h"), self.qp(f"{pre}.a"), self.qp(f"{pre}.g")
        ln, eps = self.layer_norm(pre, w["norm"], s_x, h)
        l_fc1, fc1_t_zp = self.linear(f"{pre}/fc1", w["fc1"], h.scale, h.zero_point, act.scale)
        levels = np.arange(256) - 128
        act_fn = ACTIVATIONS[w.get("activation", "gelu_sigmoid")]
        lut = np.clip(g.zero_point + _round(act_fn(act.scale * (levels - act.zero_point)) / g.scale), -128, 127)
        lut_t = self.const(f"{pre}/gelu_lut", lut, np.int8)
        l_fc2, fc2_t_zp = self.linear(f"{pre}/fc2", w["fc2"], g.scale, g.zero_point, self.tensors[y].scale[0])
        res_mult, res_shift = self._residual(x, y, pre)
        self.ops.append(Op("MCUF_MLP", [x, ln] + l_fc1 + [lut_t] + l_fc2, y, contract.make_options(
            "MCUF_MLP", hidden=a.mlp_hidden[i], fc1_rank=a.fc1_rank[i], fc2_rank=a.fc2_rank[i], ln_eps=eps,
            ln_zp=h.zero_point, fc1_t_zp=fc1_t_zp, fc2_t_zp=fc2_t_zp, fc1_zp=act.zero_point, gelu_zp=g.zero_point,
            res_mult=res_mult, res_shift=res_shift)))

    def head(self, w, x, out) -> None:
        a = self.arch
        h = self.qp("head.h")
        ln, eps = self.layer_norm("head", w["norm"], self.tensors[x].scale[0], h)
        sm_mult, sm_shift, score = 1 << 30, 1, []          # SPEC 2.4: unused unless pool is seq
        if a.pool == "mean":
            pooled = self.qp("head.pooled")
            pool_mult, pool_shift = _requant(h.scale / (a.num_tokens * pooled.scale), 255 * a.num_tokens,
                                             "head pooling")
        elif a.pool == "seq":
            pooled = self.qp("head.pooled")
            # the Q15 token weights sum to at most 32768 + T (rounding)
            pool_mult, pool_shift = _requant(h.scale / (32768.0 * pooled.scale), 255 * (32768 + a.num_tokens),
                                             "head sequence pooling")
            g = dense_kernel(w["score"])[:, 0]         # its bias shifts every token's score alike: no effect
            s_g = max(float(np.abs(g).max()) / 127.0, 1e-12)
            sm_mult, sm_shift = self.softmax_multiplier("head", 256.0 * h.scale * s_g / math.log(2.0))
        else:
            pooled, pool_mult, pool_shift = h, 0, 0
        l_fc, _ = self.linear("head/fc", w["fc"], pooled.scale, pooled.zero_point, self.tensors[out].scale[0])
        if a.pool == "seq":
            score = [self.const("head/score", np.clip(_round(g / s_g), -127, 127), np.int8, [s_g], [0])]
        self.ops.append(Op("MCUF_HEAD", [x, ln] + l_fc + score, out, contract.make_options(
            "MCUF_HEAD", pool=contract.POOL_CODES[a.pool], ln_eps=eps, ln_zp=h.zero_point,
            pool_zp=pooled.zero_point, pool_mult=pool_mult, pool_shift=pool_shift, sm_mult=sm_mult,
            sm_shift=sm_shift)))


def build_qmodel(arch, weights, ranges) -> QModel:
    """The int8 custom-op model from float weights and activation ranges."""
    b = _Builder(arch, ranges)
    size, t, e = arch.image_size, arch.num_tokens, arch.embed_dim
    image = b.activation("image", (1, size, size, arch.channels), INPUT_QPARAMS)
    stem = [b.activation(f"stem{j}", (1, s, s, c), b.qp(f"stem{j}")) for j, (s, c) in enumerate(arch.stem_shapes[1:])]
    tokens = [b.activation(f"tokens_{k}", (1, t, e), b.qp(f"tokens_{k}")) for k in range(2 * arch.depth + 1)]
    logits = b.activation("logits", (1, arch.num_classes), b.qp("logits"))
    maps = [image] + stem                           # each stem layer reads the map before it
    for j in range(len(stem)):
        b.stem(j, weights[f"stem{j}"], maps[j], maps[j + 1])
    b.patch_embed(weights, maps[-1], tokens[0])
    for i in range(arch.depth):
        b.attention(i, weights[f"block{i}_attn"], tokens[2 * i], tokens[2 * i + 1])
        b.mlp(i, weights[f"block{i}_mlp"], tokens[2 * i + 1], tokens[2 * i + 2])
    b.head(weights["head"], tokens[-1], logits)
    qmodel = QModel(b.tensors, b.ops, input=image, output=logits, description=f"MCUFormer int8 ViT {arch.describe()}")
    check_prepare(qmodel, "the quantized model")
    return qmodel
