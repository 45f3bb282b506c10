"""What the kernels' Prepare rejects, in Python: the C checks of src/*.cc, from contract.py.

`prepare_error(code, options, inputs, output)` returns the first reason the
C kernel's Prepare would refuse the op (one line naming the field), or None
when Prepare accepts it. It follows Prepare's order: options, counts, the
activations, then each constant tensor. The converter's reader
(converter/interpreter.py) and `mcuformer build` run it before anything runs or
compiles; tests/test_kernels.py holds its verdicts equal to the C ones.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import contract as C


class TensorInfo(NamedTuple):
    """What Prepare sees of a tensor: type, shape, zero point, and the values of a constant."""
    dtype: str                  # "int8", "int32", ... (numpy names)
    shape: tuple
    zero_point: int = 0
    data: object = None         # numpy array for a constant, None for an activation


class Rejected(ValueError):
    pass


_FBT_MAP = 9


def read_options(raw: bytes):
    """An op's FlexBuffer `custom_options` as a dict the way TFLM's flexbuffers.h reads it, or None
    when that is no map. flexbuffers.h reads a map's keys byte width as one byte (`Map::Keys` casts
    it to uint8_t), so garbage in that field's upper bytes is ignored there and here."""
    from flatbuffers import flexbuffers
    data = bytearray(raw)
    try:
        root_width, packed = data[-1], data[-2]
        if packed >> 2 == _FBT_MAP and root_width in (1, 2, 4, 8):
            root = len(data) - 2 - root_width
            width = 1 << (packed & 3)
            field = root - int.from_bytes(data[root:root + root_width], "little") - 2 * width
            if 0 <= field and field + width <= root:
                data[field + 1:field + width] = bytes(width - 1)
                if not _keys_in_bounds(data, field, width):
                    return None
        options = flexbuffers.Loads(bytes(data))
    except Exception:   # corrupt FlexBuffer bytes fail in many ways
        return None
    return dict(options) if isinstance(options, dict) else None


def _keys_in_bounds(data: bytearray, width_field: int, width: int) -> bool:
    """flexbuffers::Verifier's bounds check of a map's keys vector (its size prefix and elements), whose
    offset field precedes the keys byte-width field at `width_field`."""
    offset_field = width_field - width
    if offset_field < 0:
        return False
    keys = offset_field - int.from_bytes(data[offset_field:width_field], "little")
    key_width = data[width_field]
    if key_width not in (1, 2, 4, 8) or keys - key_width < 0:
        return False
    size = int.from_bytes(data[keys - key_width:keys], "little")
    return keys + size * key_width <= len(data)


def prepare_error(code: str, options, inputs, output) -> str | None:
    """The first reason Prepare rejects the op, or None."""
    try:
        C.check_options(code, options)
        _CHECKS[code](options, list(inputs), output)
    except ValueError as exc:
        return str(exc).removeprefix(f"{code}: ")
    return None


def _shape_text(dtype, shape) -> str:
    return f"{dtype} [{', '.join(str(int(d)) for d in shape)}]"


def _expect(inputs, index, what, shape) -> TensorInfo:
    t, dtype = inputs[index], C.TENSOR_TYPES[what]
    if t.dtype != dtype or tuple(t.shape) != tuple(shape):
        raise Rejected(f"input {index} ({what}) must be {_shape_text(dtype, shape)}, "
                       f"got {_shape_text(t.dtype, t.shape)}")
    return t


def _activation(t: TensorInfo, role: str, ndims: int) -> tuple:
    if t.dtype != "int8" or len(t.shape) != ndims:
        raise Rejected(f"{role} must be an int8 tensor of rank {ndims}, got {_shape_text(t.dtype, t.shape)}")
    if min(t.shape) < 1:
        raise Rejected(f"{role} has an empty dimension {tuple(t.shape)}")
    if not C.ZERO_POINT_RANGE[0] <= int(t.zero_point) <= C.ZERO_POINT_RANGE[1]:
        raise Rejected(f"{role} zero point {t.zero_point} is outside int8")
    return tuple(int(d) for d in t.shape)


def _rows(t: TensorInfo, index: int, what: str) -> None:
    if t.data is None:
        raise Rejected(f"input {index} ({what}) must be a constant tensor")
    rows = np.asarray(t.data, np.int64).reshape(t.shape[0], -1)
    bad = np.flatnonzero(~C.valid_multiplier(rows[:, 0], rows[:, 1]))
    if bad.size:
        row = int(bad[0])
        raise Rejected(f"input {index} ({what}) row {row} holds an invalid multiplier/shift "
                       f"({rows[row, 0]}, {rows[row, 1]}): {C.MULTIPLIER_RULE}")


def _count(code, options, inputs) -> None:
    want = C.input_count(code, options)
    if len(inputs) != want:
        ranks = ", ".join(f"{r} {options[r]}" for _, r in C.LINEARS[code] if r)
        raise Rejected(f"expects {want} inputs{f' ({ranks})' if ranks else ''}, got {len(inputs)}")


def _layer_norm(inputs, index, embed) -> None:
    _rows(_expect(inputs, index, "ln", (embed, 3)), index, "ln")


def _factor(inputs, first, n_in, n_out) -> None:
    for offset, (what, shape) in enumerate(zip(C.LINEAR_FACTOR, ((n_out, n_in), (n_out,), (n_out, 2)))):
        _expect(inputs, first + offset, what, shape)
    _rows(inputs[first + 2], first + 2, "rq")


def _linear(inputs, first, name, rank, n_in, n_out) -> int:
    """Checks the 3 or 6 tensors of a linear layer at `first`; returns the index after them."""
    try:
        if rank:
            _factor(inputs, first, n_in, rank)
            _factor(inputs, first + 3, rank, n_out)
        else:
            _factor(inputs, first, n_in, n_out)
    except Rejected as exc:
        raise Rejected(f"linear {name} ({n_in} -> {n_out}, rank {rank}): {exc}") from None
    return first + C.linear_tensor_count(rank)


def _tokens_in_out(inputs, output) -> tuple:
    x = _activation(inputs[0], "input 0", 3)
    y = _activation(output, "output", 3)
    t, e = x[1], x[2]
    if x[0] != 1 or y != x or t > C.MAX_SIZE or e > C.MAX_SIZE or t * e > C.INT32_MAX:
        raise Rejected(f"x and y must both be [1, T, E] with T, E <= {C.MAX_SIZE}, got {list(x)} and {list(y)}")
    return t, e


def _scratch(code, options, dims) -> None:
    if C.scratch_bytes(code, **options, **dims) > C.INT32_MAX:
        raise Rejected("scratch too large")


def _patch_embed(o, inputs, output) -> None:
    _count("MCUF_PATCH_EMBED", o, inputs)
    image = _activation(inputs[0], "input 0", 4)
    p, k, has_cls, has_pos = int(o["patch"]), int(o["kernel"]), int(o["has_cls"]), int(o["has_pos"])
    out = _activation(output, "output", 3 if has_cls or len(output.shape) != 4 else 4)
    _, h, w, c = image
    if image[0] != 1 or out[0] != 1 or h * w * c > C.INT32_MAX or k * k * c > C.MAX_SIZE or h % p or w % p:
        raise Rejected(f"image [1, H, W, C] must have H and W multiples of patch {p} and K*K*C <= {C.MAX_SIZE}, "
                       f"got {list(image)}")
    tokens, embed = (h // p) * (w // p) + has_cls, out[-1]
    grid = (h // p, w // p) if len(out) == 4 else (tokens,)
    if out[1:-1] != grid or tokens > C.MAX_SIZE or embed > C.MAX_SIZE or tokens * embed > C.INT32_MAX:
        raise Rejected(f"output must be [1, {tokens}, E] (or [1, {h // p}, {w // p}, E] without a class token) "
                       f"with T, E <= {C.MAX_SIZE}, got {list(out)}")
    after = _linear(inputs, 1, "patch", 0, k * k * c, embed)
    if has_pos:
        _expect(inputs, after, "pos", (tokens, embed))
    if has_cls:
        _expect(inputs, after + has_pos, "cls", (embed,))
    _scratch("MCUF_PATCH_EMBED", o, C.op_dims("MCUF_PATCH_EMBED", o, image, out))


def _attention(o, inputs, output) -> None:
    _count("MCUF_ATTENTION", o, inputs)
    tokens, embed = _tokens_in_out(inputs, output)
    _layer_norm(inputs, 1, embed)
    dim = int(o["qkv_dim"])
    after = _linear(inputs, 2, "qkv", int(o["qkv_rank"]), embed, 3 * dim)
    _linear(inputs, after, "proj", int(o["proj_rank"]), dim, embed)
    _scratch("MCUF_ATTENTION", o, {"tokens": tokens, "embed": embed})


def _mlp(o, inputs, output) -> None:
    _count("MCUF_MLP", o, inputs)
    _, embed = _tokens_in_out(inputs, output)
    _layer_norm(inputs, 1, embed)
    hidden = int(o["hidden"])
    lut = _linear(inputs, 2, "fc1", int(o["fc1_rank"]), embed, hidden)
    _expect(inputs, lut, "gelu_lut", (C.GELU_LUT_SIZE,))
    _linear(inputs, lut + 1, "fc2", int(o["fc2_rank"]), hidden, embed)


def _head(o, inputs, output) -> None:
    _count("MCUF_HEAD", o, inputs)
    x = _activation(inputs[0], "input 0", 3)
    y = _activation(output, "output", 2)
    if x[0] != 1 or y[0] != 1 or max(x[1], x[2], y[1]) > C.MAX_SIZE or x[1] * x[2] > C.INT32_MAX:
        raise Rejected(f"x must be [1, T, E] and logits [1, K] with T, E, K <= {C.MAX_SIZE}, "
                       f"got {list(x)} and {list(y)}")
    _layer_norm(inputs, 1, x[2])
    after = _linear(inputs, 2, "fc", 0, x[2], y[1])
    if int(o["pool"]) == C.POOL_SEQ:
        _expect(inputs, after, "score", (x[2],))


_CHECKS = {"MCUF_PATCH_EMBED": _patch_embed, "MCUF_ATTENTION": _attention, "MCUF_MLP": _mlp, "MCUF_HEAD": _head}
