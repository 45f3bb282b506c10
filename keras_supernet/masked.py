"""The supernet's forward pass with a subnet given as tensors (masks), not Python ints.

A subnet of a token grid (image size, patch size) differs from another only in
sizes that `arch_masks` turns into 0/1 vectors over the shared weights' axes
(active embedding channels, qkv columns of the active heads, hidden units, the
leading rank components, the blocks run), so one compiled graph per token grid
serves every subnet. Inactive channels stay exactly zero in the residual
stream, LayerNorm statistics are masked sums over the active channels, and a
block past the depth leaves the tokens unchanged (`Supernet.forward`). The result
equals the sliced static model (`export_subnet`) up to float rounding.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from . import functional as F
from .arch import ArchConfig


def _leading(n: int, size: int) -> np.ndarray:
    return (np.arange(size) < n).astype(np.float32)


def _rank_mask(rank: int, size: int) -> np.ndarray:
    """Leading `rank` components; full rank (0) uses all of them."""
    return _leading(rank or size, size)


def window_offset(patch_size: int, kernel: int, overlap_max: int) -> int:
    """Where a K x K tokenizer window starts inside the widest one (patch_size + overlap_max) of
    the same stride: both SAME-padded, (K - P) // 2 zeros before, so this offset makes the
    narrower window see exactly the pixels the static K x K convolution sees."""
    return overlap_max // 2 - (kernel - patch_size) // 2


def arch_masks(config: ArchConfig, max_dims: dict) -> dict:
    """The subnet as fixed-shape float32 arrays (the same shapes for every subnet)."""
    e_max, q_max, h_max, d_max = (max_dims[k] for k in ("embed_dim", "qkv_dim", "mlp_hidden", "depth"))
    blocks = range(d_max)

    def per_block(make):
        return np.stack([make(i) if i < config.depth else make(None) for i in blocks])

    def qkv_cols(i):
        one = _leading(config.qkv_dim[i] if i is not None else 0, q_max)
        return np.concatenate([one, one, one])

    def ranked(name, size):
        return per_block(lambda i: _rank_mask(getattr(config, f"{name}_rank")[i], size) if i is not None
                         else np.zeros(size, np.float32))

    overlap_max = max_dims.get("patch_overlap", 0)
    window = np.zeros(max_dims["patch_size"] + overlap_max, np.float32)
    start = window_offset(config.patch_size, config.kernel, overlap_max)
    window[start:start + config.kernel] = 1.0
    return {
        "window": window,
        "embed": _leading(config.embed_dim, e_max),
        "blocks": _leading(config.depth, d_max),
        "qkv": per_block(qkv_cols),
        "hidden": per_block(lambda i: _leading(config.mlp_hidden[i] if i is not None else 0, h_max)),
        "qkv_rank": ranked("qkv", min(e_max, 3 * q_max)),
        "proj_rank": ranked("proj", min(q_max, e_max)),
        "fc1_rank": ranked("fc1", min(e_max, h_max)),
        "fc2_rank": ranked("fc2", min(h_max, e_max)),
    }


def layer_norm(x, mask, gamma, beta, eps: float = F.LN_EPSILON):
    """`functional.layer_norm` over the channels where `mask` is 1 (zero elsewhere)."""
    n = tf.reduce_sum(mask)
    mean = tf.reduce_sum(x * mask, axis=-1, keepdims=True) / n
    centered = (x - mean) * mask
    var = tf.reduce_sum(tf.square(centered), axis=-1, keepdims=True) / n
    return centered * tf.math.rsqrt(var + eps) * gamma + beta * mask


def linear(x, v, u, bias, rank_mask, out_mask):
    """x V U + b over the leading components in `rank_mask`, outputs outside `out_mask` zeroed."""
    return (tf.linalg.matmul(tf.linalg.matmul(x, v) * rank_mask, u) + bias) * out_mask


def attention(x, heads: int, embed, cols, qkv_rank, proj_rank, w):
    """`functional.attention` at the largest head count; inactive heads have q = k = v = 0,
    so their context is zero and the projection ignores them."""
    t, q_max = x.shape[1], cols.shape[-1] // 3
    head_dim = q_max // heads
    h = layer_norm(x, embed, w.norm_gamma, w.norm_beta)
    qkv = linear(h, w.qkv_v, w.qkv_u, w.qkv_bias, qkv_rank, cols)

    def split(z):
        return tf.transpose(tf.reshape(z, (-1, t, heads, head_dim)), (0, 2, 1, 3))

    q, k, v = (split(qkv[..., i * q_max:(i + 1) * q_max]) for i in range(3))
    probs = tf.nn.softmax(tf.linalg.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(head_dim)), axis=-1)
    context = tf.reshape(tf.transpose(tf.linalg.matmul(probs, v), (0, 2, 1, 3)), (-1, t, q_max))
    return x + linear(context, w.proj_v, w.proj_u, w.proj_bias, proj_rank, embed)


def mlp(x, embed, hidden, fc1_rank, fc2_rank, w):
    h = layer_norm(x, embed, w.norm_gamma, w.norm_beta)
    h = F.gelu_sigmoid(linear(h, w.fc1_v, w.fc1_u, w.fc1_bias, fc1_rank, hidden))
    return x + linear(h, w.fc2_v, w.fc2_u, w.fc2_bias, fc2_rank, embed)


def classifier(x, embed, pool: str, w):
    h = layer_norm(x, embed, w.norm_gamma, w.norm_beta)     # zero outside the active channels
    score = {"kernel": w.score_kernel, "bias": w.score_bias} if pool == "seq" else None
    return F.linear(F.pool_tokens(h, pool, score), w.fc_bias, kernel=w.fc_kernel)
