"""The TFLiteConverter int8 builtin-op graph of a subnet (converter/baseline.py),
built analytically from its ArchConfig: "all techniques off" in the memory model.

Mirrors what TFLiteConverter emits for the static ViT at batch 1: CONV_2D patch
embedding, LayerNorm as MEAN/SUB/SQUARED_DIFFERENCE/MEAN/ADD/RSQRT/MUL (plus MUL
gamma, ADD beta unless a following full-rank FULLY_CONNECTED absorbs them),
attention through STRIDED_SLICE/RESHAPE/TRANSPOSE/BATCH_MATMUL/SOFTMAX, GELU as
x * LOGISTIC(1.702 x); constants the converter de-duplicates are shared here too.
tests/test_memory_measured.py checks it against converted models in TFLM.
"""
from __future__ import annotations

from functools import lru_cache

from common.errors import UserError

from .tflite_graph import Graph, OpInfo, TensorInfo, plan_graph


class _Builder:
    def __init__(self):
        self.tensors, self.ops, self._shared = [], [], {}

    def act(self, *shape) -> int:
        self.tensors.append(TensorInfo(tuple(shape), 1, False, (1.0,)))
        return len(self.tensors) - 1

    def const(self, shape, itemsize=1, channels=0, key=None) -> int:
        if key is not None and key in self._shared:
            return self._shared[key]
        self.tensors.append(TensorInfo(tuple(shape), itemsize, True, (1.0,) * channels))
        index = len(self.tensors) - 1
        if key is not None:
            self._shared[key] = index
        return index

    def op(self, name, inputs, *out_shape, **options) -> int:
        out = self.act(*out_shape)
        self.ops.append(OpInfo(name, list(inputs), [out], options))
        return out

    def fc(self, x, t, n_in, n_out, rank, bias=True) -> int:
        if rank:
            x = self.op("FULLY_CONNECTED", [x, self.const((rank, n_in), channels=rank)], 1, t, rank)
        n = rank or n_in
        inputs = [x, self.const((n_out, n), channels=n_out)]
        if bias:
            inputs.append(self.const((n_out,), 4, channels=n_out))
        return self.op("FULLY_CONNECTED", inputs, 1, t, n_out)

    def layer_norm(self, x, t, e, affine: bool) -> int:
        axis = self.const((), 4, key="axis")
        mean = self.op("MEAN", [x, axis], 1, t, 1)
        centered = self.op("SUB", [x, mean], 1, t, e)
        square = self.op("SQUARED_DIFFERENCE", [x, mean], 1, t, e)
        var = self.op("MEAN", [square, axis], 1, t, 1)
        var = self.op("ADD", [var, self.const((), 1, 1, key="eps")], 1, t, 1)
        inv = self.op("RSQRT", [var], 1, t, 1)
        y = self.op("MUL", [centered, inv], 1, t, e)
        if affine:
            y = self.op("MUL", [y, self.const((e,), 1, 1)], 1, t, e)
            y = self.op("ADD", [y, self.const((e,), 1, 1)], 1, t, e)
        return y

    def split_heads(self, qkv, part, t, d, heads) -> int:
        dh = d // heads
        s = self.op("STRIDED_SLICE", [qkv] + [self.const((3,), 4, key=("slice", part, k)) for k in range(3)], 1, t, d)
        if heads == 1:
            return self.op("RESHAPE", [s, self.const((4,), 4, key=("shape", 1, t, 1, d))], 1, 1, t, d)
        r = self.op("RESHAPE", [s, self.const((4,), 4, key=("shape", 1, t, heads, dh))], 1, t, heads, dh)
        return self.op("TRANSPOSE", [r, self.const((4,), 4, key="perm")], 1, heads, t, dh)


def builtin_graph(config) -> Graph:
    if config.pool == "seq":
        raise UserError("the builtin-op graph (techniques off) has no sequence pooling: its memory is modelled "
                        "for pool mean and cls only")
    b = _Builder()
    t, e, g = config.num_tokens, config.embed_dim, config.grid
    image = x = b.act(1, config.image_size, config.image_size, config.channels)
    for k, _, c_in, c, size in config.stem_layers():      # the ReLU fuses into CONV_2D
        x = b.op("CONV_2D", [x, b.const((c, k, k, c_in), channels=c), b.const((c,), 4, channels=c)], 1, size, size, c)
    c_in = config.stem_shapes[-1][1]
    x = b.op("CONV_2D", [x, b.const((e, config.kernel, config.kernel, c_in), channels=e),
                         b.const((e,), 4, channels=e)], 1, g, g, e)
    x = b.op("RESHAPE", [x, b.const((3,), 4, key=("shape", 1, g * g, e))], 1, g * g, e)
    if config.pool == "cls":
        x = b.op("CONCATENATION", [x, b.const((1, 1, e), 1, 1)], 1, t, e)
    x = b.op("ADD", [x, b.const((t, e), 1, 1)], 1, t, e)
    for i in range(config.depth):
        d, heads, hidden = config.qkv_dim[i], config.num_heads[i], config.mlp_hidden[i]
        h = b.layer_norm(x, t, e, affine=config.qkv_rank[i] > 0)
        qkv = b.fc(h, t, e, 3 * d, config.qkv_rank[i])
        q, k = b.split_heads(qkv, 0, t, d, heads), b.split_heads(qkv, 1, t, d, heads)
        scores = b.op("BATCH_MATMUL", [q, k], 1, heads, t, t, adj_x=False, adj_y=True)
        scores = b.op("MUL", [scores, b.const((), 1, 1, key=("scale", d // heads))], 1, heads, t, t)
        probs = b.op("SOFTMAX", [scores], 1, heads, t, t)
        v = b.split_heads(qkv, 2, t, d, heads)
        ctx = b.op("BATCH_MATMUL", [probs, v], 1, heads, t, d // heads, adj_x=False, adj_y=False)
        if heads > 1:
            ctx = b.op("TRANSPOSE", [ctx, b.const((4,), 4, key="perm")], 1, t, heads, d // heads)
        ctx = b.op("RESHAPE", [ctx, b.const((3,), 4, key=("shape", 1, t, d))], 1, t, d)
        x = b.op("ADD", [x, b.fc(ctx, t, d, e, config.proj_rank[i])], 1, t, e)
        h = b.layer_norm(x, t, e, affine=config.fc1_rank[i] > 0)
        a = b.fc(h, t, e, hidden, config.fc1_rank[i])
        s = b.op("MUL", [a, b.const((), 1, 1, key="gelu")], 1, t, hidden)
        s = b.op("LOGISTIC", [s], 1, t, hidden)
        gelu = b.op("MUL", [a, s], 1, t, hidden)
        x = b.op("ADD", [x, b.fc(gelu, t, hidden, e, config.fc2_rank[i])], 1, t, e)
    h = b.layer_norm(x, t, e, affine=True)
    if config.pool == "cls":
        pooled = b.op("STRIDED_SLICE", [h] + [b.const((3,), 4, key=("last", k)) for k in range(3)], 1, e)
    else:
        pooled = b.op("MEAN", [h, b.const((1,), 4, key="tokens")], 1, e)
    logits = b.fc(pooled, 1, e, config.num_classes, 0)
    b.tensors[logits] = TensorInfo((1, config.num_classes), 1, False, (1.0,))
    return Graph(b.tensors, b.ops, [image], [logits])


@lru_cache(maxsize=256)
def builtin_arena(config, pointer_size: int = 4) -> tuple:
    """(head, tail) of the builtin-op graph in TFLM (reference kernels)."""
    plan = plan_graph(builtin_graph(config), pointer_size)
    return plan.head_bytes, plan.tail_bytes
