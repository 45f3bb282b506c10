"""Bring your own ViT: map a stock tf_keras ViT onto the project's static ViT.

The model is read as a graph of layer calls (`keras_graph`) and matched to

    image -> patch embedding (Conv2D kernel = stride, or patches -> Dense)
          [-> class token] [-> learned position embedding]           tokens_0
    block: LayerNormalization -> MultiHeadAttention -> add
           LayerNormalization -> Dense(act) -> Dense -> add           x depth
    LayerNormalization -> mean or class-token pooling -> Dense        logits

The result is an `ArchConfig` and a `keras_supernet.static_vit` model holding
the same weights, so the ordinary quantizer, writer and offline plan convert
it. Weightless and custom layers are recognised by what they do, never by
their class name: the layers before the first block are probed as one affine
map (which must be a shared per-patch linear map plus a per-token constant:
the bias, the position embedding and the class token), the pooling layers on
random tokens, and the MLP activation on a grid. Anything else is one line
naming the layer, its type and what is supported; nothing is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.errors import UserError
from keras_supernet.arch import ArchConfig
from tflm_ops.reference import patches

from .float_model import ACTIVATIONS
from .keras_graph import Graph, run_chain
from .static_weights import static_model

SUPPORTED = ("supported: a patch embedding (Conv2D with kernel = stride, or patches -> Dense), an optional "
             "class token and position embedding, pre-norm blocks LayerNormalization -> MultiHeadAttention -> "
             "add -> LayerNormalization -> Dense(gelu|relu|swish) -> Dense -> add, a final "
             "LayerNormalization, mean or class-token pooling and a Dense head")
# builtin layers the layers before the first block may use (custom layers are probed)
STEM_LAYERS = {"Conv2D", "Dense", "Reshape", "Permute", "Rescaling", "Normalization", "Concatenate", "Add",
               "TFOpLambda", "SlicingOpLambda", "Lambda"}
ACTIVATION_NAMES = {"gelu": "GELU (erf)", "gelu_tanh": "GELU (tanh)", "gelu_sigmoid": "x*sigmoid(1.702x)",
                    "relu": "relu", "swish": "swish"}
PROBE_TOLERANCE = 1e-4          # relative to the probed values' magnitude (float32 arithmetic)


@dataclass
class ImportedViT:
    """A stock model mapped onto the static ViT (`model`), and what the mapping did."""
    model: object                  # keras_supernet.static_vit model with the user's weights
    arch: ArchConfig
    source: object                 # the user's tf_keras model
    input_scale: float             # the user's model takes pixels * input_scale / 255
    notes: dict = field(default_factory=dict)
    softmax_output: bool = False   # the user's head ends in softmax (the converted model outputs logits)

    def source_logits(self, images) -> np.ndarray:
        """The user's model on float pixels / 255 (what the converter feeds the static model)."""
        x = np.asarray(images, np.float32) * self.input_scale
        return self.source.predict(x, batch_size=256, verbose=0)


def _reject(node, what: str):
    raise UserError(f"{node.describe()} {what}; {SUPPORTED}")


# ---- the pattern -------------------------------------------------------------------------------

def _norm(node) -> tuple:
    layer = node.layer
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if list(axis) not in ([-1], [len(node.shape)]) or getattr(layer, "rms_scaling", False):
        _reject(node, f"normalises over axis {list(axis)} (or RMS-scales); only a LayerNorm over the channels")
    e = node.shape[-1]
    gamma = layer.gamma.numpy() if layer.scale else np.ones(e)
    beta = layer.beta.numpy() if layer.center else np.zeros(e)
    return np.asarray(gamma, np.float64), np.asarray(beta, np.float64), float(layer.epsilon)


def _dense(node) -> dict:
    layer = node.layer
    kernel = np.asarray(layer.kernel.numpy(), np.float64)
    bias = np.asarray(layer.bias.numpy(), np.float64) if layer.use_bias else np.zeros(kernel.shape[1])
    return {"kernel": kernel, "bias": bias}


def _activation_of(fn_or_nodes) -> str | None:
    """The name in ACTIVATIONS of an elementwise function (or chain of calls), probed on a grid."""
    grid = np.linspace(-8.0, 8.0, 3201)
    if callable(fn_or_nodes):
        import tensorflow as tf

        y = np.asarray(fn_or_nodes(tf.constant(grid[None, :], tf.float32)), np.float64)[0]
    else:
        y = run_chain(fn_or_nodes, grid[None, :])[0]
    if np.allclose(y, grid, atol=1e-6):
        return "linear"
    for name, fn in ACTIVATIONS.items():
        if np.allclose(y, fn(grid), rtol=2e-5, atol=2e-5):
            return name
    return None


def _attention(node, ln, block: int) -> tuple:
    """(num_heads, qkv weights, proj weights) of a self-attention MultiHeadAttention call."""
    layer, cfg = node.layer, node.layer.get_config()
    if any(i is not ln for i in node.inputs) or not node.inputs:
        _reject(node, f"in block {block} does not attend over the LayerNormalization {ln.name!r} alone "
                      f"(query = key = value); only self-attention")
    kwargs = node.call.call_kwargs
    if kwargs.get("attention_mask") is not None or kwargs.get("use_causal_mask") \
            or kwargs.get("return_attention_scores"):
        _reject(node, "uses an attention mask or returns its scores; only unmasked self-attention")
    if cfg["value_dim"] not in (None, cfg["key_dim"]) or cfg.get("output_shape") not in (None, node.shape[-1:]):
        _reject(node, f"has value_dim {cfg['value_dim']} != key_dim {cfg['key_dim']} or an output_shape")
    if tuple(cfg.get("attention_axes") or (1,)) != (1,):
        _reject(node, f"attends over axes {cfg['attention_axes']}; only over the tokens")
    heads, key_dim = cfg["num_heads"], cfg["key_dim"]
    dim = heads * key_dim
    e = ln.shape[-1]

    def part(dense, n_in, n_out):
        kernel = np.asarray(dense.kernel.numpy(), np.float64).reshape(n_in, n_out)
        bias = np.asarray(dense.bias.numpy(), np.float64).reshape(n_out) if dense.bias is not None \
            else np.zeros(n_out)
        return kernel, bias

    q, k, v = (part(d, e, dim) for d in (layer._query_dense, layer._key_dense, layer._value_dense))
    proj = part(layer._output_dense, dim, e)
    qkv = {"kernel": np.concatenate([q[0], k[0], v[0]], axis=1), "bias": np.concatenate([q[1], k[1], v[1]])}
    return heads, qkv, {"kernel": proj[0], "bias": proj[1]}


def _mlp(fc1, block: int) -> tuple:
    """(fc1 weights, fc2 weights, activation name, fc2 node) of LN -> Dense -> [activation] -> Dense."""
    act = _activation_of(fc1.layer.activation)
    nxt = fc1.only_consumer
    if nxt is not None and nxt.kind != "Dense" and not nxt.layer.weights and len(nxt.inputs) == 1 \
            and nxt.shape == fc1.shape:
        separate = _activation_of([nxt])
        if act != "linear" or separate is None:
            what = "a second activation" if act != "linear" else "an elementwise function"
            _reject(nxt, f"after {fc1.name!r} in block {block}'s MLP is {what} the converter cannot "
                         f"tabulate (supported activations: {', '.join(ACTIVATION_NAMES.values())})")
        act, nxt = separate, nxt.only_consumer
    if act is None:
        _reject(fc1, f"in block {block}'s MLP has an activation that is none of "
                     f"{', '.join(ACTIVATION_NAMES.values())}")
    if act == "linear":
        _reject(fc1, f"in block {block}'s MLP has no activation before the second Dense")
    if nxt is None or nxt.kind != "Dense":
        culprit = nxt if nxt is not None else fc1
        _reject(culprit, f"follows {fc1.name!r} in block {block}'s MLP, where the second Dense belongs")
    if _activation_of(nxt.layer.activation) != "linear":
        _reject(nxt, f"is the second Dense of block {block}'s MLP and has an activation; it must be linear")
    return _dense(fc1), _dense(nxt), act, nxt


def _residual_branch(x, block: int, expect: str) -> tuple:
    """(kind, norm node, branch nodes, add node) of the sub-block reading the token stream `x`."""
    cons = x.consumers
    norms = [c for c in cons if c.kind == "LayerNormalization"]
    adds = [c for c in cons if c.is_add]
    if len(cons) != 2 or len(norms) != 1 or len(adds) != 1:
        odd = next((c for c in cons if c not in norms[:1] + adds[:1]), cons[0] if cons else x)
        if odd.kind in ("MultiHeadAttention", "Dense"):
            _reject(odd, f"reads the token stream of block {block} without a LayerNormalization before it "
                         f"(a post-norm block?)")
        _reject(odd, f"reads the token stream of block {block} where a pre-norm {expect} sub-block belongs")
    ln, add = norms[0], adds[0]
    first = ln.only_consumer
    if first is None:
        _reject(ln, f"in block {block} feeds {len(ln.consumers)} layers; it must feed the {expect} alone")
    return ln, first, add


def _blocks(tokens0) -> tuple:
    """Walk the residual stream from tokens_0: (block dicts, the final LayerNormalization)."""
    x, blocks = tokens0, []
    while True:
        block = len(blocks)
        if len(x.consumers) == 1 and x.only_consumer.kind == "LayerNormalization" \
                and x.only_consumer.only_consumer is not None \
                and x.only_consumer.only_consumer.kind not in ("MultiHeadAttention",) and blocks:
            return blocks, x.only_consumer
        ln_a, mha, add_a = _residual_branch(x, block, "attention")
        if mha.kind != "MultiHeadAttention":
            _reject(mha, f"follows the LayerNormalization {ln_a.name!r} of block {block}, where "
                         f"MultiHeadAttention belongs")
        heads, qkv, proj = _attention(mha, ln_a, block)
        if mha.only_consumer is not add_a or set(map(id, add_a.inputs)) != {id(x), id(mha)}:
            culprit = mha.only_consumer or mha
            _reject(culprit, f"follows the MultiHeadAttention of block {block}, where the residual add belongs")
        x = add_a
        ln_m, fc1, add_m = _residual_branch(x, block, "MLP")
        if fc1.kind != "Dense":
            _reject(fc1, f"follows the LayerNormalization {ln_m.name!r} of block {block}'s MLP, where a Dense "
                         f"belongs")
        w1, w2, act, fc2 = _mlp(fc1, block)
        if fc2.only_consumer is not add_m or set(map(id, add_m.inputs)) != {id(x), id(fc2)}:
            _reject(fc2.only_consumer or fc2, f"follows the second Dense of block {block}'s MLP, where the "
                                              f"residual add belongs")
        blocks.append({"heads": heads, "norm_a": _norm(ln_a), "qkv": qkv, "proj": proj,
                       "norm_m": _norm(ln_m), "fc1": w1, "fc2": w2, "activation": act,
                       "layers": [ln_a.name, mha.name, ln_m.name, fc1.name, fc2.name]})
        x = add_m


def _head(graph, final_ln) -> tuple:
    """(pool chain, head Dense node, head weights, notes) after the final LayerNormalization."""
    chain, node = [], final_ln.only_consumer
    while node is not None and node.kind != "Dense":
        if node.layer.weights or len(node.inputs) != 1:
            _reject(node, "sits between the final LayerNormalization and the head Dense, where only "
                          "weightless pooling belongs")
        chain.append(node)
        node = node.only_consumer
    if node is None:
        _reject(chain[-1] if chain else final_ln, "is not followed by a single Dense head")
    if node is not graph.output:
        _reject(node.only_consumer or node, "follows the head Dense; the Dense head must be the model's output")
    if not chain:
        _reject(node, "reads every token; pool them first (GlobalAveragePooling1D or the class token)")
    notes = {}
    act = _activation_of(node.layer.activation)
    if act != "linear":
        if getattr(node.layer.activation, "__name__", "") != "softmax":
            _reject(node, "is the head and has an activation; only linear or softmax")
        notes["head_softmax"] = "dropped: the converted model outputs logits (same argmax)"
    return chain, node, _dense(node), notes


def _stem_checks(stem) -> None:
    linear = None
    for node in stem:
        kind = node.kind
        builtin = type(node.layer).__module__.startswith(("tf_keras", "keras"))
        if kind in ("Conv2D", "Dense"):
            if linear is not None:
                _reject(node, f"comes after the patch embedding {linear.name!r}; only one Conv2D (kernel = "
                              f"stride) or Dense projects the patches before the first block")
            linear = node
            if _activation_of(node.layer.activation) != "linear":
                _reject(node, "is the patch embedding and has an activation; it must be linear")
            if kind == "Conv2D":
                cfg = node.layer.get_config()
                k, s = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
                if k != s or k[0] != k[1] or cfg["padding"] != "valid" or tuple(cfg["dilation_rate"]) != (1, 1) \
                        or cfg.get("groups", 1) != 1:
                    _reject(node, f"has kernel {k}, strides {s}, padding {cfg['padding']!r}: a patch embedding "
                                  f"needs a square kernel = stride, padding 'valid', no dilation or groups")
        elif builtin and kind not in STEM_LAYERS and kind != "InputLayer":
            _reject(node, "comes before the first block, where only the patch embedding, class token and "
                          "position embedding belong")
    if linear is None and not any(n.layer.weights for n in stem):
        raise UserError(f"no patch embedding found before the first block (a Conv2D with kernel = stride, or "
                        f"patches -> Dense); {SUPPORTED}")


def _input_scale(stem) -> float:
    """255 when the model rescales raw pixels itself (Rescaling(1/255) on the input), else 1."""
    first = stem[0] if stem else None
    if first is not None and first.kind == "Rescaling":
        cfg = first.layer.get_config()
        if abs(float(cfg["scale"]) * 255.0 - 1.0) < 1e-6 and float(cfg.get("offset", 0.0)) == 0.0:
            return 255.0
    return 1.0


def _probe_stem(graph, tokens0, input_scale) -> dict:
    """Patch kernel, per-token constants and token order of the layers before the first block."""
    import tf_keras as keras

    h, w, c = graph.input.shape
    t, e = tokens0.shape
    sizes = [p for p in range(1, h + 1) if h % p == 0 and w % p == 0 and (h // p) * (w // p) in (t, t - 1)]
    if h != w or not sizes:
        _reject(tokens0, f"gives {t} tokens of {e}, which no non-overlapping square patch of the {h}x{w} "
                         f"input makes (with at most one class token)")
    p = sizes[-1]
    n, pd = (h // p) * (w // p), p * p * c
    images = np.zeros((1 + pd + 2, h, w, c))
    for j in range(pd):
        dy, dx, ch = np.unravel_index(j, (p, p, c))
        images[1 + j, dy::p, dx::p, ch] = 1.0
    images[-2:] = np.random.default_rng(0).random((2, h, w, c))
    stem_model = keras.Model(graph.model.inputs[0], tokens0.tensor)
    y = np.asarray(stem_model.predict(images.astype(np.float32) * input_scale, batch_size=64, verbose=0),
                   np.float64)
    tol = PROBE_TOLERANCE * (np.abs(y).max() + 1.0)
    base, resp = y[0], y[1:1 + pd] - y[0]
    responds = np.abs(resp).max(axis=(0, 2)) > tol
    cls_tokens = np.flatnonzero(~responds)
    patch_tokens = np.flatnonzero(responds)
    if len(patch_tokens) != n or len(cls_tokens) != t - n:
        _reject(tokens0, f"ends the layers before the first block, whose {t} tokens do not behave like {n} "
                         f"patch tokens of {p}x{p} patches" + (" and a class token" if t > n else ""))
    kernel = resp[:, patch_tokens[0], :]
    shared = np.abs(resp[:, patch_tokens, :] - kernel[:, None, :]).max() <= tol
    predicted = patches(images[-2:], p) @ kernel                      # [2, n, e], row-major patches
    actual = y[-2:, patch_tokens, :] - base[patch_tokens]
    err = np.abs(actual[:, :, None, :] - predicted[:, None, :, :]).max(axis=(0, 3))   # [token, patch]
    order = err.argmin(axis=0)
    if not shared or len(set(order)) != n or err[order, np.arange(n)].max() > tol * 10:
        _reject(tokens0, f"ends the layers before the first block, which do not compute one linear map of "
                         f"each non-overlapping {p}x{p} patch (plus constants): overlapping, nonlinear or "
                         f"mixing patches")
    per_token = base[patch_tokens[order]]                            # bias + position, row-major patches
    bias = (per_token.max(axis=0) + per_token.min(axis=0)) / 2       # the split that minimises pos' range
    pos = per_token - bias
    cls = None
    if t > n:
        cls = base[cls_tokens[0]]
        pos = np.concatenate([pos, np.zeros((1, e))])
    return {"patch_size": p, "kernel": kernel.reshape(p, p, c, e), "bias": bias, "pos": pos, "cls": cls,
            "cls_index": int(cls_tokens[0]) if t > n else None}


def _pooling(chain, tokens, cls_index) -> str:
    x = np.random.default_rng(1).normal(size=(2,) + tuple(tokens))
    y = run_chain(chain, x)
    if y.shape == (2, tokens[-1]):
        if np.allclose(y, x.mean(axis=1), rtol=1e-4, atol=1e-5):
            return "mean"
        if cls_index is not None and np.allclose(y, x[:, cls_index], rtol=1e-4, atol=1e-5):
            return "cls"
    _reject(chain[-1], f"pools the tokens into {y.shape[1:]} in a way that is neither their mean nor the "
                       f"class token" + ("" if cls_index is not None else " (the model has no class token)"))


def import_vit(model) -> ImportedViT:
    """Map a stock tf_keras ViT onto an ArchConfig and a static ViT with its weights (UserError if it
    does not match the supported pattern)."""
    graph = Graph(model)
    mhas = [n for n in graph.order if n.kind == "MultiHeadAttention"]
    if not mhas:
        raise UserError(f"model {model.name!r} has no MultiHeadAttention layer; {SUPPORTED}")
    first_in = mhas[0].inputs[0]
    if first_in.kind != "LayerNormalization":
        _reject(mhas[0], f"reads {first_in.name!r} ({first_in.kind}) directly; blocks must be pre-norm "
                         f"(a post-norm block is not supported)")
    tokens0 = first_in.inputs[0]
    if len(tokens0.shape) != 2:
        _reject(tokens0, f"gives tokens of shape {tokens0.shape}; the blocks need [tokens, channels]")
    h, w, c = graph.input.shape
    if h != w or c not in (1, 3):
        raise UserError(f"model {model.name!r} takes {h}x{w}x{c} images; only square 1- or 3-channel inputs")
    stem = [n for n in graph.ancestors(tokens0) if n is not graph.input]
    _stem_checks(stem)
    input_scale = _input_scale(stem)
    blocks, final_ln = _blocks(tokens0)
    chain, head_node, head_w, notes = _head(graph, final_ln)
    pe = _probe_stem(graph, tokens0, input_scale)
    pool = _pooling(chain, tokens0.shape, pe["cls_index"])
    arch = ArchConfig(image_size=h, channels=c, patch_size=pe["patch_size"], embed_dim=tokens0.shape[-1],
                      num_classes=head_w["kernel"].shape[1], pool=pool,
                      num_heads=[b["heads"] for b in blocks], qkv_dim=[b["qkv"]["kernel"].shape[1] // 3
                                                                      for b in blocks],
                      mlp_hidden=[b["fc1"]["kernel"].shape[1] for b in blocks])
    weights = {"patch_embed": {k: pe[k] for k in ("kernel", "bias", "pos", "cls")},
               "head": {"norm": _norm(final_ln), "fc": head_w}}
    options = {"head": {"norm_epsilon": weights["head"]["norm"][2]}}
    for i, b in enumerate(blocks):
        weights[f"block{i}_attn"] = {"norm": b["norm_a"], "qkv": b["qkv"], "proj": b["proj"]}
        weights[f"block{i}_mlp"] = {"norm": b["norm_m"], "fc1": b["fc1"], "fc2": b["fc2"],
                                    "activation": b["activation"]}
        options[f"block{i}_attn"] = {"norm_epsilon": b["norm_a"][2]}
        options[f"block{i}_mlp"] = {"norm_epsilon": b["norm_m"][2], "activation": b["activation"]}
    static = static_model(arch, weights, options, name=model.name)
    notes.update({
        "patch_embedding": next((f"{n.name} ({n.kind})" for n in stem if n.kind in ("Conv2D", "Dense")),
                                "a custom layer"),
        "class_token_index": pe["cls_index"],
        "pooling": pool,
        "activations": [ACTIVATION_NAMES[b["activation"]] for b in blocks],
        "layer_norm_epsilon": sorted({b["norm_a"][2] for b in blocks} | {b["norm_m"][2] for b in blocks}
                                     | {weights["head"]["norm"][2]}),
        "input_scale": input_scale,
        "blocks": [b["layers"] for b in blocks],
        "head": [final_ln.name] + [n.name for n in chain] + [head_node.name],
    })
    return ImportedViT(static, arch, model, input_scale, notes, softmax_output="head_softmax" in notes)


def weight_error(imported: ImportedViT, images) -> float:
    """Largest |output difference| between the user's model and the static ViT on `images` (pixels / 255)."""
    ours = imported.model.predict(np.asarray(images, np.float32), batch_size=256, verbose=0)
    if imported.softmax_output:             # compare in the user's output space: probabilities
        ours = np.exp(ours - ours.max(axis=1, keepdims=True))
        ours /= ours.sum(axis=1, keepdims=True)
    return float(np.abs(ours - imported.source_logits(images)).max())

