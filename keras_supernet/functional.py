"""The ViT's math as plain functions of tensors and weights.

The static layers (`static_vit.py`) call these with their own weights and the
supernet's layers call them with sliced shared weights, so a subnet and the
supernet under the same config compute the very same thing. Every op here is
one the int8 kernels implement (see tflm_ops/SPEC.md).
"""
from __future__ import annotations

import math

import tensorflow as tf

LN_EPSILON = 1e-6
GELU_SIGMOID_ALPHA = 1.702


def gelu_sigmoid(x):
    """GELU approximated as x * sigmoid(1.702 x): exact in an int8 LUT, and TFLM
    builtins (LOGISTIC, MUL) can run it too for the baseline graph."""
    return x * tf.sigmoid(GELU_SIGMOID_ALPHA * x)


def gelu_erf(x):
    """GELU with erf (tf_keras' `gelu`, approximate=False)."""
    return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    """GELU's tanh approximation (tf_keras' `gelu` with approximate=True)."""
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


# The MLP activations by name. The int8 MLP tabulates whichever one a block uses in its
# 256-entry LUT (SPEC 1.4), so each runs exactly up to int8 rounding.
ACTIVATIONS = {"gelu_sigmoid": gelu_sigmoid, "gelu": gelu_erf, "gelu_tanh": gelu_tanh, "relu": tf.nn.relu,
               "swish": tf.nn.silu}


def layer_norm(x, gamma, beta, eps: float = LN_EPSILON):
    """LayerNorm over the last axis, statistics over the channels present only."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centered = x - mean
    var = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
    return centered * tf.math.rsqrt(var + eps) * gamma + beta


def linear(x, bias, kernel=None, v=None, u=None):
    """y = x W + b with W full (`kernel`, in x out) or low-rank (`v`: in x r, `u`: r x out)."""
    if kernel is not None:
        y = tf.linalg.matmul(x, kernel)
    else:
        y = tf.linalg.matmul(tf.linalg.matmul(x, v), u)
    return y + bias


def patch_embed(images, kernel, bias, pos, cls=None, stride=None):
    """p x p patches (conv, stride p) + bias + positional embedding.

    `kernel` is (k, k, C, E); `stride` p defaults to k (non-overlapping patches).
    k > p is the convolutional tokenizer: TF's SAME padding, (k - p) // 2 zeros
    before and the rest after, as SPEC 2.1. Tokens are in row-major patch order. With a
    class token it is appended *after* the patch tokens (index N), so patch
    tokens keep offsets t * E in the int8 token buffer.
    """
    k = kernel.shape[0]
    p = stride or k
    y = tf.nn.conv2d(images, kernel, strides=p, padding="VALID" if k == p else "SAME") + bias
    b = tf.shape(y)[0]
    n = y.shape[1] * y.shape[2]
    tokens = tf.reshape(y, (b, n, y.shape[3]))
    if cls is not None:
        tokens = tf.concat([tokens, tf.tile(tf.reshape(cls, (1, 1, -1)), (b, 1, 1))], axis=1)
    return tokens + pos


def attention(x, heads: int, norm, qkv, proj):
    """Pre-norm multi-head self-attention with residual: x + proj(MHA(LN(x))).

    `norm` = (gamma, beta); `qkv`, `proj` = dicts of `linear` arguments. The
    qkv output is [q | k | v], each heads x head_dim, head h at columns
    h*head_dim:(h+1)*head_dim.
    """
    t = x.shape[1]
    h = layer_norm(x, *norm)
    qkv_out = linear(h, **qkv)
    qkv_dim = qkv_out.shape[-1] // 3
    head_dim = qkv_dim // heads

    def split(z):
        return tf.transpose(tf.reshape(z, (-1, t, heads, head_dim)), (0, 2, 1, 3))

    q, k, v = (split(qkv_out[..., i * qkv_dim:(i + 1) * qkv_dim]) for i in range(3))
    scores = tf.linalg.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(head_dim))
    probs = tf.nn.softmax(scores, axis=-1)
    context = tf.reshape(tf.transpose(tf.linalg.matmul(probs, v), (0, 2, 1, 3)), (-1, t, qkv_dim))
    return x + linear(context, **proj)


def mlp(x, norm, fc1, fc2, activation: str = "gelu_sigmoid"):
    """Pre-norm MLP with residual: x + fc2(act(fc1(LN(x)))), act one of ACTIVATIONS."""
    return x + linear(ACTIVATIONS[activation](linear(layer_norm(x, *norm), **fc1)), **fc2)


def pool_tokens(h, pool: str, score=None):
    """[B, T, E] -> [B, E]: the mean over tokens, the class token (last), or sequence pooling
    (CCT's SeqPool: tokens weighted by a softmax over tokens of the E -> 1 linear `score`)."""
    if pool == "mean":
        return tf.reduce_mean(h, axis=1)
    if pool == "cls":
        return h[:, -1, :]
    weights = tf.nn.softmax(linear(h, **score), axis=1)          # [B, T, 1]
    return tf.reduce_sum(weights * h, axis=1)


def classifier(x, norm, fc, pool: str, score=None):
    """Final LayerNorm, pooling (`pool_tokens`), linear."""
    return linear(pool_tokens(layer_norm(x, *norm), pool, score), **fc)
