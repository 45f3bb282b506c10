"""The deployable ViT: a plain static tf_keras model built from an ArchConfig.

`export_subnet` produces this model with weights inherited from the supernet;
the converter reads exactly these layers and weights:

  stem{j}            Conv2D:         kernel (k,k,C_in,C), bias (C); stride s, SAME padding, ReLU
  patch_embed        PatchEmbed:     kernel (p,p,C,E), bias (E), pos (T,E)[, cls (E)]
  block{i}_attn      AttentionBlock: norm_gamma/beta (E), qkv*, proj*
  block{i}_mlp       MlpBlock:       norm_gamma/beta (E), fc1*, fc2*
  head               ClassifierHead: norm_gamma/beta (E), fc*[, score* (E -> 1, pool "seq")]

where each linear `*` is `{name}_kernel` (in,out) or `{name}_v` (in,r) and
`{name}_u` (r,out), plus `{name}_bias` (out).
"""
from __future__ import annotations

import tf_keras as keras

from . import functional as F
from .arch import ArchConfig


def _small_normal(shape, dtype=None):
    """TruncatedNormal(0.02), one instance per weight: an unseeded instance called twice repeats its values."""
    return keras.initializers.TruncatedNormal(stddev=0.02)(shape, dtype=dtype)


class _ViTLayer(keras.layers.Layer):
    """Shared helpers: LayerNorm weights and (low-rank) linear weights by name.

    `norm_epsilon`: the LayerNorm's epsilon (the supernet's is functional.LN_EPSILON;
    an imported model keeps its own, which the converter folds into `ln_eps`).
    """

    def __init__(self, norm_epsilon: float = F.LN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.norm_epsilon = float(norm_epsilon)

    def get_config(self):
        return {**super().get_config(), "norm_epsilon": self.norm_epsilon}

    def _add_norm(self, dim):
        self.norm_gamma = self.add_weight(name="norm_gamma", shape=(dim,), initializer="ones")
        self.norm_beta = self.add_weight(name="norm_beta", shape=(dim,), initializer="zeros")

    def _add_linear(self, name, n_in, n_out, rank):
        init = _small_normal
        if rank:
            setattr(self, f"{name}_v", self.add_weight(name=f"{name}_v", shape=(n_in, rank), initializer=init))
            setattr(self, f"{name}_u", self.add_weight(name=f"{name}_u", shape=(rank, n_out), initializer=init))
        else:
            setattr(self, f"{name}_kernel", self.add_weight(name=f"{name}_kernel", shape=(n_in, n_out),
                                                            initializer=init))
        setattr(self, f"{name}_bias", self.add_weight(name=f"{name}_bias", shape=(n_out,), initializer="zeros"))

    def linear_args(self, name) -> dict:
        if hasattr(self, f"{name}_kernel"):
            return {"kernel": getattr(self, f"{name}_kernel"), "bias": getattr(self, f"{name}_bias")}
        return {"v": getattr(self, f"{name}_v"), "u": getattr(self, f"{name}_u"),
                "bias": getattr(self, f"{name}_bias")}

    @property
    def norm(self):
        return (self.norm_gamma, self.norm_beta, self.norm_epsilon)


class PatchEmbed(keras.layers.Layer):
    """Patch embedding; `kernel_size` > `patch_size` is the overlapping convolutional tokenizer (0: = patch)."""

    def __init__(self, patch_size: int, embed_dim: int, use_cls: bool = False, kernel_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.patch_size, self.embed_dim, self.use_cls = patch_size, embed_dim, use_cls
        self.kernel_size = 0 if kernel_size == patch_size else kernel_size

    def build(self, input_shape):
        h, w, c = input_shape[1:]
        p, k, e = self.patch_size, self.kernel_size or self.patch_size, self.embed_dim
        tokens = (h // p) * (w // p) + int(self.use_cls)
        self.kernel = self.add_weight(name="kernel", shape=(k, k, c, e), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(e,), initializer="zeros")
        self.pos = self.add_weight(name="pos", shape=(tokens, e), initializer=_small_normal)
        self.cls = self.add_weight(name="cls", shape=(e,), initializer=_small_normal) if self.use_cls else None

    def call(self, images):
        return F.patch_embed(images, self.kernel, self.bias, self.pos, self.cls, stride=self.patch_size)

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size, "embed_dim": self.embed_dim,
                "use_cls": self.use_cls, "kernel_size": self.kernel_size}


class AttentionBlock(_ViTLayer):
    def __init__(self, num_heads: int, qkv_dim: int, qkv_rank: int = 0, proj_rank: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.qkv_dim, self.qkv_rank, self.proj_rank = num_heads, qkv_dim, qkv_rank, proj_rank

    def build(self, input_shape):
        e = input_shape[-1]
        self._add_norm(e)
        self._add_linear("qkv", e, 3 * self.qkv_dim, self.qkv_rank)
        self._add_linear("proj", self.qkv_dim, e, self.proj_rank)

    def call(self, x):
        return F.attention(x, self.num_heads, self.norm, self.linear_args("qkv"), self.linear_args("proj"))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "qkv_dim": self.qkv_dim,
                "qkv_rank": self.qkv_rank, "proj_rank": self.proj_rank}


class MlpBlock(_ViTLayer):
    def __init__(self, hidden: int, fc1_rank: int = 0, fc2_rank: int = 0, activation: str = "gelu_sigmoid",
                 **kwargs):
        super().__init__(**kwargs)
        if activation not in F.ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(F.ACTIVATIONS)}")
        self.hidden, self.fc1_rank, self.fc2_rank, self.activation = hidden, fc1_rank, fc2_rank, activation

    def build(self, input_shape):
        e = input_shape[-1]
        self._add_norm(e)
        self._add_linear("fc1", e, self.hidden, self.fc1_rank)
        self._add_linear("fc2", self.hidden, e, self.fc2_rank)

    def call(self, x):
        return F.mlp(x, self.norm, self.linear_args("fc1"), self.linear_args("fc2"), self.activation)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "fc1_rank": self.fc1_rank,
                "fc2_rank": self.fc2_rank, "activation": self.activation}


class ClassifierHead(_ViTLayer):
    def __init__(self, num_classes: int, pool: str = "mean", **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.pool = num_classes, pool

    def build(self, input_shape):
        e = input_shape[-1]
        self._add_norm(e)
        self._add_linear("fc", e, self.num_classes, 0)
        if self.pool == "seq":
            self._add_linear("score", e, 1, 0)

    def call(self, x):
        score = self.linear_args("score") if self.pool == "seq" else None
        return F.classifier(x, self.norm, self.linear_args("fc"), self.pool, score)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "pool": self.pool}


CUSTOM_OBJECTS = {cls.__name__: cls for cls in (PatchEmbed, AttentionBlock, MlpBlock, ClassifierHead)}


def stem_layer(kernel: int, stride: int, channels: int, name: str, seed: int | None = None) -> keras.layers.Conv2D:
    """One stem convolution. Its SAME padding pads (K - s) // 2 before, as SPEC 2.1's `pad`, whenever the
    stride divides the input (ArchConfig.validate asks that)."""
    return keras.layers.Conv2D(channels, kernel, strides=stride, padding="same", activation="relu", name=name,
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed))


def _stem_of(model) -> list:
    """(kernel, stride, channels) of each stem{j} Conv2D; anything else is a UserError."""
    from common.errors import UserError

    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    stem = []
    for j, layer in enumerate(convs):
        k, s = layer.kernel_size, layer.strides
        if (layer.name != f"stem{j}" or k[0] != k[1] or s[0] != s[1] or layer.padding != "same"
                or layer.activation is not keras.activations.relu or not layer.use_bias
                or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1):
            raise UserError(f"layer {layer.name!r}: a stem convolution must be named stem{j} and be square, "
                            f"strided, SAME padded, with bias and ReLU (static_vit.stem_layer)")
        stem.append((k[0], s[0], layer.filters))
    return stem


def build_vit(config: ArchConfig, name: str = "vit", layer_options: dict | None = None) -> keras.Model:
    """A static ViT for `config` (fresh weights). Input: float pixels / 255.

    `layer_options`: extra constructor arguments by layer name, e.g. an imported
    model's `{"block0_mlp": {"activation": "gelu", "norm_epsilon": 1e-3}}`.
    """
    extra = layer_options or {}
    inputs = keras.Input((config.image_size, config.image_size, config.channels), name="image")
    x = inputs
    for j, (kernel, stride, channels) in enumerate(config.stem):
        x = stem_layer(kernel, stride, channels, f"stem{j}")(x)
    x = PatchEmbed(config.patch_size, config.embed_dim, use_cls=config.pool == "cls",
                   kernel_size=config.patch_kernel, name="patch_embed")(x)
    for i in range(config.depth):
        x = AttentionBlock(config.num_heads[i], config.qkv_dim[i], config.qkv_rank[i], config.proj_rank[i],
                           name=f"block{i}_attn", **extra.get(f"block{i}_attn", {}))(x)
        x = MlpBlock(config.mlp_hidden[i], config.fc1_rank[i], config.fc2_rank[i], name=f"block{i}_mlp",
                     **extra.get(f"block{i}_mlp", {}))(x)
    outputs = ClassifierHead(config.num_classes, config.pool, name="head", **extra.get("head", {}))(x)
    model = keras.Model(inputs, outputs, name=name)
    model.arch_config = config
    return model


def load_vit(path) -> keras.Model:
    """Load a saved static ViT (.keras / .h5 / SavedModel) with its custom layers."""
    return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)


def arch_from_model(model: keras.Model) -> ArchConfig:
    """Recover the ArchConfig of a static ViT (e.g. one loaded from .keras)."""
    from common.errors import UserError

    try:
        h, w, c = model.input_shape[1:]
        pe = model.get_layer("patch_embed")
        head = model.get_layer("head")
        depth = sum(1 for l in model.layers if isinstance(l, AttentionBlock))
        attn = [model.get_layer(f"block{i}_attn") for i in range(depth)]
        mlp = [model.get_layer(f"block{i}_mlp") for i in range(depth)]
    except (ValueError, AttributeError, TypeError) as exc:
        raise UserError(f"model {model.name!r} is not a static ViT built by keras_supernet "
                        f"(patch_embed, block<i>_attn/_mlp, head): {exc}") from None
    if h != w:
        raise UserError(f"model {model.name!r}: only square inputs are supported, got {h}x{w}")
    return ArchConfig(image_size=h, channels=c, patch_size=pe.patch_size, patch_kernel=pe.kernel_size,
                      embed_dim=pe.embed_dim, stem=_stem_of(model),
                      num_classes=head.num_classes, pool=head.pool,
                      num_heads=[a.num_heads for a in attn], qkv_dim=[a.qkv_dim for a in attn],
                      mlp_hidden=[m.hidden for m in mlp], qkv_rank=[a.qkv_rank for a in attn],
                      proj_rank=[a.proj_rank for a in attn], fc1_rank=[m.fc1_rank for m in mlp],
                      fc2_rank=[m.fc2_rank for m in mlp])
