"""Super-layers (AutoFormer style): shared weights at the space's largest sizes,
`set_sample_config(config)` picks a subnet and `active_weights()` gives that subnet's
weights under the static model's names (`static_vit.py`, for `export_subnet`);
`call` runs the subnet given as masks (`masked.py`) on the whole shared weights,
so one graph serves every subnet of a token grid.

Weight sharing choices:
* Linear layers hold one factorisation W = V U with R = min(in_max, out_max)
  components, initialised from the SVD of a dense truncated-normal init (V =
  A sqrt(S), U = sqrt(S) B^T, components ordered by singular value). A rank-r
  subnet uses V[:in, :r], U[:r, :out]; "full rank" uses all R components and is
  exported as the dense kernel V[:in, :R] U[:R, :out]. So every rank shares the
  leading components with every other rank and with full rank.
* qkv: q, k and v each take their leading `qkv_dim` columns of their own third.
* Patch embedding: one kernel at the largest patch size; a p x p kernel is its
  pseudo-inverse (FlexiViT "PI") resize K_p = B^T K B with B the bilinear
  p -> p_max upsampling matrix, so a p-patch gives the token its upsampled
  p_max-patch would give. A space with `patch_overlap` choices (the convolutional
  tokenizer, SPEC 2.1) does the same with (p + o_max) x (p + o_max) windows of
  stride p; a subnet's smaller overlap o uses the (p + o) x (p + o) part of that
  window its SAME padding aligns with (`masked.window_offset`), masked in training.
* Positional embedding: one grid at the largest token grid, bilinearly resized
  to the subnet's grid (the class token's position is separate).
"""
from __future__ import annotations

import zlib

import numpy as np
import tensorflow as tf
import tf_keras as keras

from common.datasets import interp_matrix   # the one bilinear resampling matrix

from . import functional as F
from . import masked as M
from .arch import ArchConfig

INIT_STDDEV = 0.02


def _truncated_normal(rng, shape):
    """Normal(0, 0.02) clipped at 2 sigma (the static model's TruncatedNormal, reproducibly seeded)."""
    return np.clip(rng.normal(0.0, INIT_STDDEV, shape), -2 * INIT_STDDEV, 2 * INIT_STDDEV).astype(np.float32)


def svd_factors(dense: np.ndarray) -> tuple:
    """(V, U) with dense == V @ U, components ordered by decreasing singular value.

    TensorFlow's SVD, not numpy's: multi-threaded OpenBLAS is ~20x slower on a busy CPU."""
    s, a, b = (t.numpy() for t in tf.linalg.svd(tf.constant(dense, tf.float32)))
    root = np.sqrt(s)
    return (a * root).astype(np.float32), (root[:, None] * b.T).astype(np.float32)


class _SuperLayer(keras.layers.Layer):
    """Shared weights sized by `max_dims` (SearchSpace.max_dims()); `seed` fixes the init."""

    def __init__(self, max_dims: dict, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.max_dims, self.seed = dict(max_dims), int(seed)
        self.config: ArchConfig | None = None

    def set_sample_config(self, config: ArchConfig) -> None:
        self.config = config

    def _rng(self):
        return np.random.default_rng([self.seed, zlib.crc32(self.name.encode())])

    def _add(self, name, value):
        var = self.add_weight(name=name, shape=np.shape(value), initializer="zeros")
        var.assign(value)
        return var

    def _add_norm(self):
        e = self.max_dims["embed_dim"]
        self.norm_gamma = self._add("norm_gamma", np.ones(e, np.float32))
        self.norm_beta = self._add("norm_beta", np.zeros(e, np.float32))

    def _add_linear(self, name, n_in, n_out, rng):
        v, u = svd_factors(_truncated_normal(rng, (n_in, n_out)))
        setattr(self, f"{name}_v", self._add(f"{name}_v", v))
        setattr(self, f"{name}_u", self._add(f"{name}_u", u))
        setattr(self, f"{name}_bias", self._add(f"{name}_bias", np.zeros(n_out, np.float32)))

    def _norm_weights(self) -> dict:
        e = self.config.embed_dim
        return {"norm_gamma": self.norm_gamma[:e], "norm_beta": self.norm_beta[:e]}

    def _linear_weights(self, name, n_in, out_slices, rank) -> dict:
        """Static-model weights of linear `name`: its first `n_in` inputs, output columns
        `out_slices` (list of (start, stop)), `rank` leading components (0 = all, dense)."""
        v, u, bias = (getattr(self, f"{name}_{k}") for k in ("v", "u", "bias"))

        def cols(t):
            parts = [t[..., a:b] for a, b in out_slices]
            return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

        if rank == 0:
            return {f"{name}_kernel": tf.linalg.matmul(v[:n_in], cols(u)), f"{name}_bias": cols(bias)}
        return {f"{name}_v": v[:n_in, :rank], f"{name}_u": cols(u[:rank]), f"{name}_bias": cols(bias)}

    def get_config(self):
        return {**super().get_config(), "max_dims": self.max_dims, "seed": self.seed}


class SuperPatchEmbed(_SuperLayer):
    def build(self, input_shape):
        m = self.max_dims
        rng = self._rng()
        k, c, e, g = self._window(m["patch_size"]), m["channels"], m["embed_dim"], m["grid"]
        limit = np.sqrt(6.0 / (k * k * c + e))          # glorot_uniform, as the static model
        self.kernel = self._add("kernel", rng.uniform(-limit, limit, (k, k, c, e)).astype(np.float32))
        self.bias = self._add("bias", np.zeros(e, np.float32))
        self.pos_grid = self._add("pos_grid", _truncated_normal(rng, (g, g, e)))
        self.cls = self._add("cls", _truncated_normal(rng, (e,))) if m["pool"] == "cls" else None
        self.cls_pos = self._add("cls_pos", _truncated_normal(rng, (e,))) if m["pool"] == "cls" else None
        super().build(input_shape)

    def _window(self, patch_size: int) -> int:
        """The tokenizer window of a patch size (SPEC 2.1; the patch itself without overlap)."""
        return patch_size + self.max_dims.get("patch_overlap", 0)

    def _resized(self, patch_size: int, grid: int) -> dict:
        """Kernel, bias and positions (all E_max channels) for a patch size and token grid."""
        m = self.max_dims
        kernel = self.kernel
        k, k_max = self._window(patch_size), self._window(m["patch_size"])
        if k != k_max:
            b = tf.constant(interp_matrix(k, k_max))                       # (k_max, k) upsampling
            kernel = tf.einsum("ai,bj,abce->ijce", b, b, kernel)
        pos = self.pos_grid
        if grid != m["grid"]:
            a = tf.constant(interp_matrix(m["grid"], grid))                # (g, g_max)
            pos = tf.einsum("ia,jb,abe->ije", a, a, pos)
        pos = tf.reshape(pos, (grid * grid, m["embed_dim"]))
        w = {"kernel": kernel, "bias": self.bias, "pos": pos}
        if m["pool"] == "cls":
            w["pos"] = tf.concat([pos, self.cls_pos[None, :]], axis=0)
            w["cls"] = self.cls
        return w

    def active_weights(self) -> dict:
        cfg = self.config
        w = {k: v[..., :cfg.embed_dim] for k, v in self._resized(cfg.patch_size, cfg.grid).items()}
        start = M.window_offset(cfg.patch_size, cfg.kernel, self.max_dims["patch_overlap"])
        w["kernel"] = w["kernel"][start:start + cfg.kernel, start:start + cfg.kernel]
        return w

    def call(self, images, embed, patch_size: int, window=None):
        """`window`: the subnet's tokenizer window as a 0/1 mask over the largest one (masks["window"])."""
        w = self._resized(patch_size, images.shape[1] // patch_size)
        w = {k: v * embed for k, v in w.items()}
        if window is not None and self.max_dims["patch_overlap"]:
            rows = window[:self._window(patch_size)]
            w["kernel"] = w["kernel"] * rows[:, None, None, None] * rows[None, :, None, None]
        return F.patch_embed(images, **w, stride=patch_size)


class SuperAttention(_SuperLayer):
    def __init__(self, max_dims: dict, block: int, seed: int = 0, **kwargs):
        super().__init__(max_dims, seed, **kwargs)
        self.block = block

    def build(self, input_shape):
        e, q = self.max_dims["embed_dim"], self.max_dims["qkv_dim"]
        rng = self._rng()
        self._add_norm()
        self._add_linear("qkv", e, 3 * q, rng)
        self._add_linear("proj", q, e, rng)
        super().build(input_shape)

    def active_weights(self) -> dict:
        cfg, i, q_max = self.config, self.block, self.max_dims["qkv_dim"]
        e, q = cfg.embed_dim, cfg.qkv_dim[i]
        return {**self._norm_weights(),
                **self._linear_weights("qkv", e, [(k * q_max, k * q_max + q) for k in range(3)], cfg.qkv_rank[i]),
                **self._linear_weights("proj", q, [(0, e)], cfg.proj_rank[i])}

    def call(self, x, masks):
        i = self.block
        heads = self.max_dims["qkv_dim"] // self.max_dims["head_dim"]
        return M.attention(x, heads, masks["embed"], masks["qkv"][i], masks["qkv_rank"][i],
                           masks["proj_rank"][i], self)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


class SuperMlp(_SuperLayer):
    def __init__(self, max_dims: dict, block: int, seed: int = 0, **kwargs):
        super().__init__(max_dims, seed, **kwargs)
        self.block = block

    def build(self, input_shape):
        e, hidden = self.max_dims["embed_dim"], self.max_dims["mlp_hidden"]
        rng = self._rng()
        self._add_norm()
        self._add_linear("fc1", e, hidden, rng)
        self._add_linear("fc2", hidden, e, rng)
        super().build(input_shape)

    def active_weights(self) -> dict:
        cfg, i = self.config, self.block
        e, hidden = cfg.embed_dim, cfg.mlp_hidden[i]
        return {**self._norm_weights(),
                **self._linear_weights("fc1", e, [(0, hidden)], cfg.fc1_rank[i]),
                **self._linear_weights("fc2", hidden, [(0, e)], cfg.fc2_rank[i])}

    def call(self, x, masks):
        i = self.block
        return M.mlp(x, masks["embed"], masks["hidden"][i], masks["fc1_rank"][i], masks["fc2_rank"][i], self)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


class SuperHead(_SuperLayer):
    """Final LayerNorm + dense classifier (never low-rank), rows sliced to E; sequence pooling's
    E -> 1 score linear likewise."""

    def build(self, input_shape):
        e, n = self.max_dims["embed_dim"], self.max_dims["num_classes"]
        rng = self._rng()
        self._add_norm()
        self.fc_kernel = self._add("fc_kernel", _truncated_normal(rng, (e, n)))
        self.fc_bias = self._add("fc_bias", np.zeros(n, np.float32))
        if self.max_dims["pool"] == "seq":
            self.score_kernel = self._add("score_kernel", _truncated_normal(rng, (e, 1)))
            self.score_bias = self._add("score_bias", np.zeros(1, np.float32))
        super().build(input_shape)

    def active_weights(self) -> dict:
        e = self.config.embed_dim
        out = {**self._norm_weights(), "fc_kernel": self.fc_kernel[:e], "fc_bias": self.fc_bias}
        if self.max_dims["pool"] == "seq":
            out.update(score_kernel=self.score_kernel[:e], score_bias=self.score_bias)
        return out

    def call(self, x, masks):
        return M.classifier(x, masks["embed"], self.max_dims["pool"], self)
