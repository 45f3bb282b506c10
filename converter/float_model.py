"""The static ViT's float weights as numpy, and its float forward pass with taps.

`read_weights` reads exactly the layers and weights documented in
keras_supernet/static_vit.py and rejects anything else (naming the layer and
the supported set). `forward` mirrors keras_supernet/functional.py in numpy
and hands every quantization point to `tap(name, value)`, which calibration
uses to record activation ranges.
"""
from __future__ import annotations

import math

import numpy as np

from keras_supernet import functional as F
from keras_supernet.static_vit import CUSTOM_OBJECTS, arch_from_model
from common.errors import UserError
from tflm_ops.reference import patches          # the kernel's (py, px, ch) patch order

SUPPORTED_LAYERS = ("InputLayer", "Conv2D", *CUSTOM_OBJECTS)     # Conv2D: stem layers (static_vit.stem_layer)


def _linear(layer, name) -> dict:
    w = {v.name.split("/")[-1].split(":")[0]: v.numpy().astype(np.float64) for v in layer.weights}
    out = {"bias": w[f"{name}_bias"]}
    if f"{name}_kernel" in w:
        out["kernel"] = w[f"{name}_kernel"]
    else:
        out["v"], out["u"] = w[f"{name}_v"], w[f"{name}_u"]
    return out


def _norm(layer) -> tuple:
    """(gamma, beta, epsilon) of a static layer's LayerNorm."""
    return (layer.norm_gamma.numpy().astype(np.float64), layer.norm_beta.numpy().astype(np.float64),
            getattr(layer, "norm_epsilon", F.LN_EPSILON))


def read_weights(model) -> tuple:
    """(ArchConfig, weights dict) of a static ViT; unsupported layers are a UserError."""
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in SUPPORTED_LAYERS:
            raise UserError(f"layer {layer.name!r} ({kind}) is not supported by the converter; "
                            f"supported layers: {', '.join(SUPPORTED_LAYERS)}")
    arch = arch_from_model(model)
    pe = model.get_layer("patch_embed")
    stems = [model.get_layer(f"stem{j}") for j in range(len(arch.stem))]
    weights = {s.name: {"kernel": s.kernel.numpy().astype(np.float64), "bias": s.bias.numpy().astype(np.float64)}
               for s in stems}
    weights["patch_embed"] = {"kernel": pe.kernel.numpy().astype(np.float64),
                               "bias": pe.bias.numpy().astype(np.float64),
                               "pos": pe.pos.numpy().astype(np.float64),
                               "cls": None if pe.cls is None else pe.cls.numpy().astype(np.float64)}
    for i in range(arch.depth):
        attn, mlp = model.get_layer(f"block{i}_attn"), model.get_layer(f"block{i}_mlp")
        weights[f"block{i}_attn"] = {"norm": _norm(attn), "qkv": _linear(attn, "qkv"),
                                     "proj": _linear(attn, "proj")}
        weights[f"block{i}_mlp"] = {"norm": _norm(mlp), "fc1": _linear(mlp, "fc1"), "fc2": _linear(mlp, "fc2"),
                                    "activation": getattr(mlp, "activation", "gelu_sigmoid")}
    head = model.get_layer("head")
    weights["head"] = {"norm": _norm(head), "fc": _linear(head, "fc")}
    if arch.pool == "seq":
        weights["head"]["score"] = _linear(head, "score")
    return arch, weights


def dense_kernel(lin: dict) -> np.ndarray:
    """The (in, out) kernel of a full or low-rank linear."""
    return lin["kernel"] if "kernel" in lin else lin["v"] @ lin["u"]


# ---- float forward ------------------------------------------------------------------

def _layer_norm(x, gamma, beta, eps=F.LN_EPSILON):
    mean = x.mean(-1, keepdims=True)
    c = x - mean
    return c / np.sqrt((c * c).mean(-1, keepdims=True) + eps) * gamma + beta


def gelu(x):
    """functional.gelu_sigmoid in numpy: x * sigmoid(1.702 x)."""
    return x / (1.0 + np.exp(-F.GELU_SIGMOID_ALPHA * x))


_erf = np.vectorize(math.erf, otypes=[np.float64])

# functional.ACTIVATIONS in numpy (float64)
ACTIVATIONS = {
    "gelu_sigmoid": gelu,
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3))),
    "relu": lambda x: np.maximum(x, 0.0),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
}


def _apply_linear(x, lin, tap, prefix):
    if "kernel" in lin:
        return x @ lin["kernel"] + lin["bias"]
    t = x @ lin["v"]
    tap(f"{prefix}.t", t)
    return t @ lin["u"] + lin["bias"]


def pool_tokens(h, pool, score=None) -> np.ndarray:
    """functional.pool_tokens in numpy: mean, class token (last) or sequence pooling."""
    if pool == "mean":
        return h.mean(axis=1)
    if pool == "cls":
        return h[:, -1, :]
    scores = (h @ score["kernel"] + score["bias"])[..., 0]               # [N, T]
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return np.einsum("nt,nte->ne", weights / weights.sum(-1, keepdims=True), h)


def _noop(name, value):
    pass


def forward(arch, weights, images, tap=_noop) -> np.ndarray:
    """Float logits of images (float pixels / 255, NHWC); taps every quantized point."""
    x = np.asarray(images, np.float64)
    n = x.shape[0]
    for j, (kernel, stride, _, channels, size) in enumerate(arch.stem_layers()):
        stem = weights[f"stem{j}"]
        x = np.maximum(patches(x, stride, kernel) @ stem["kernel"].reshape(-1, channels) + stem["bias"], 0.0)
        x = x.reshape(n, size, size, channels)
        tap(f"stem{j}", x)
    pe = weights["patch_embed"]
    p, e = arch.patch_size, arch.embed_dim
    tokens = patches(x, p, arch.kernel) @ pe["kernel"].reshape(-1, e) + pe["bias"]
    if pe["cls"] is not None:
        tokens = np.concatenate([tokens, np.broadcast_to(pe["cls"], (n, 1, e))], axis=1)
    x = tokens + pe["pos"]
    tap("tokens_0", x)
    t = arch.num_tokens
    for i in range(arch.depth):
        a = weights[f"block{i}_attn"]
        pre = f"block{i}_attn"
        h = _layer_norm(x, *a["norm"])
        tap(f"{pre}.h", h)
        qkv = _apply_linear(h, a["qkv"], tap, f"{pre}.qkv")
        dim, heads = arch.qkv_dim[i], arch.num_heads[i]
        hd = dim // heads
        q, k, v = (qkv[..., j * dim:(j + 1) * dim] for j in range(3))
        for name, z in (("q", q), ("k", k), ("v", v)):
            tap(f"{pre}.{name}", z)
        q, k, v = (z.reshape(n, t, heads, hd).transpose(0, 2, 1, 3) for z in (q, k, v))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = ((s / s.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(n, t, dim)
        tap(f"{pre}.ctx", ctx)
        x = x + _apply_linear(ctx, a["proj"], tap, f"{pre}.proj")
        tap(f"tokens_{2 * i + 1}", x)
        m = weights[f"block{i}_mlp"]
        pre = f"block{i}_mlp"
        h = _layer_norm(x, *m["norm"])
        tap(f"{pre}.h", h)
        act = _apply_linear(h, m["fc1"], tap, f"{pre}.fc1")
        tap(f"{pre}.a", act)
        g = ACTIVATIONS[m.get("activation", "gelu_sigmoid")](act)
        tap(f"{pre}.g", g)
        x = x + _apply_linear(g, m["fc2"], tap, f"{pre}.fc2")
        tap(f"tokens_{2 * i + 2}", x)
    hd_ = weights["head"]
    h = _layer_norm(x, *hd_["norm"])
    tap("head.h", h)
    tap("head.pooled", pooled := pool_tokens(h, arch.pool, hd_.get("score")))
    logits = pooled @ hd_["fc"]["kernel"] + hd_["fc"]["bias"]
    tap("logits", logits)
    return logits
