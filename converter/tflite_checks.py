"""Structural checks of untrusted .tflite bytes before anything reads them.

The Python twin of deploy/runner/model_checks.cc, with the same rules: every
offset the reader follows lies inside the bytes and is aligned (what the
flatbuffers verifier checks, for the fields read here), then the bounds TFLM
trusts without checking: one subgraph, buffer / tensor / opcode indices in
range, constant data the size of its tensor, per-channel quantization the
size of its dimension, an offline memory plan that matches the tensors.
`check_structure` raises `TfliteCheckError` (a ValueError) with a one-line reason.
"""
from __future__ import annotations

import struct

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
OFFLINE_PLAN_NAME = b"OfflineMemoryAllocation"
MAX_TENSOR_BYTES = 2**31 - 1
ARENA_ALIGNMENT = 16        # TFLM's MicroArenaBufferAlignment(): kernels rely on it
# TensorType -> element bytes, for the types TFLM's kernels read (others are refused)
ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 15: 4, 16: 2}

# field indices (schema.fbs order)
MODEL_VERSION, MODEL_CODES, MODEL_SUBGRAPHS, MODEL_BUFFERS, MODEL_METADATA = 0, 1, 2, 4, 6
GRAPH_TENSORS, GRAPH_INPUTS, GRAPH_OUTPUTS, GRAPH_OPERATORS = 0, 1, 2, 3
TENSOR_SHAPE, TENSOR_TYPE, TENSOR_BUFFER, TENSOR_QUANTIZATION, TENSOR_SPARSITY = 0, 1, 2, 4, 6
QUANT_SCALE, QUANT_ZERO_POINT, QUANT_DIMENSION = 2, 3, 6
OP_OPCODE, OP_INPUTS, OP_OUTPUTS, OP_INTERMEDIATES = 0, 1, 2, 8
BUFFER_DATA = 0
META_NAME, META_BUFFER = 0, 1


class TfliteCheckError(ValueError):
    pass


class _Table:
    """A flatbuffers table whose every read is bounds- and alignment-checked."""

    def __init__(self, data: bytes, pos: int):
        self.data = data
        if pos % 4 or pos + 4 > len(data):
            raise TfliteCheckError(f"a table offset ({pos}) lies outside the {len(data)} bytes")
        self.pos = pos
        self.vtable = pos - _read(data, "<i", pos)
        if self.vtable % 2 or self.vtable < 0:
            raise TfliteCheckError("a table's vtable lies outside the bytes")
        self.vtable_size = _read(data, "<H", self.vtable)
        if self.vtable_size % 2 or self.vtable + self.vtable_size > len(data):
            raise TfliteCheckError("a table's vtable lies outside the bytes")

    def _field(self, index: int, size: int) -> int | None:
        slot = 4 + 2 * index
        if slot >= self.vtable_size:
            return None
        offset = _read(self.data, "<H", self.vtable + slot)
        if offset == 0:
            return None
        if self.pos + offset + size > len(self.data) or (self.pos + offset) % size:
            raise TfliteCheckError("a table field lies outside the bytes or is misaligned")
        return self.pos + offset

    def scalar(self, index: int, fmt: str, default):
        at = self._field(index, struct.calcsize(fmt))
        return default if at is None else _read(self.data, fmt, at)

    def _target(self, index: int) -> int | None:
        at = self._field(index, 4)
        return None if at is None else at + _read(self.data, "<I", at)

    def vector(self, index: int, element: int) -> tuple | None:
        """(start of the elements, count) of a vector field, or None when absent."""
        at = self._target(index)
        if at is None:
            return None
        count = _read(self.data, "<I", at)
        start = at + 4
        if at % 4 or start + count * element > len(self.data):
            raise TfliteCheckError("a vector lies outside the bytes or is misaligned")
        return start, count

    def values(self, index: int, fmt: str) -> list | None:
        vec = self.vector(index, struct.calcsize(fmt))
        return None if vec is None else list(struct.unpack_from(f"<{vec[1]}{fmt[-1]}", self.data, vec[0]))

    def tables(self, index: int) -> list | None:
        vec = self.vector(index, 4)
        if vec is None:
            return None
        start, count = vec
        return [_Table(self.data, start + 4 * i + _read(self.data, "<I", start + 4 * i)) for i in range(count)]

    def table(self, index: int):
        at = self._target(index)
        return None if at is None else _Table(self.data, at)

    def string(self, index: int) -> bytes | None:
        vec = self.vector(index, 1)
        return None if vec is None else self.data[vec[0]:vec[0] + vec[1]]


def _read(data: bytes, fmt: str, at: int):
    if at < 0 or at + struct.calcsize(fmt) > len(data):
        raise TfliteCheckError(f"an offset ({at}) lies outside the {len(data)} bytes")
    return struct.unpack_from(fmt, data, at)[0]


def _check_indices(what: str, indices, count: int, optional_allowed: bool = False) -> None:
    if indices is None:
        raise TfliteCheckError(f"{what} tensors are missing")
    for index in indices:
        if not (optional_allowed and index == -1) and not 0 <= index < count:
            raise TfliteCheckError(f"{what} tensor {index} is out of range ({count} tensors)")


def _check_quantization(index: int, tensor: _Table, shape: list) -> None:
    q = tensor.table(TENSOR_QUANTIZATION)
    scales = None if q is None else q.vector(QUANT_SCALE, 4)
    if scales is None or scales[1] <= 1:
        return
    channels, dim = scales[1], q.scalar(QUANT_DIMENSION, "<i", 0)
    if not 0 <= dim < len(shape) or shape[dim] != channels:
        raise TfliteCheckError(f"tensor {index} has {channels} quantization scales for quantized dimension {dim}")
    zero_points = q.vector(QUANT_ZERO_POINT, 8)
    if (zero_points[1] if zero_points else 0) not in (1, channels):
        raise TfliteCheckError(f"tensor {index} has {zero_points[1] if zero_points else 0} zero points "
                               f"for {channels} scales")


def _tensor_bytes(index: int, tensor: _Table, buffers: list) -> tuple:
    """(bytes of the tensor, its constant data's (start, length) or None)."""
    dtype = tensor.scalar(TENSOR_TYPE, "<b", 0)
    element = ELEMENT_BYTES.get(dtype)
    if element is None:
        raise TfliteCheckError(f"tensor {index} has type {dtype}, which the runner does not support")
    shape = tensor.values(TENSOR_SHAPE, "<i") or []
    nbytes = element
    for dim in shape:
        if dim < 0:
            raise TfliteCheckError(f"tensor {index} has a negative dimension ({dim})")
        nbytes *= dim
        if nbytes > MAX_TENSOR_BYTES:
            raise TfliteCheckError(f"tensor {index} is larger than 2 GiB")
    if tensor.table(TENSOR_SPARSITY) is not None:
        raise TfliteCheckError(f"tensor {index} is sparse, which TFLM does not run")
    buffer = tensor.scalar(TENSOR_BUFFER, "<I", 0)
    if buffer >= len(buffers):
        raise TfliteCheckError(f"tensor {index} uses buffer {buffer} of {len(buffers)}")
    data = buffers[buffer].vector(BUFFER_DATA, 1)
    if data is not None and data[1]:
        if data[1] != nbytes:
            raise TfliteCheckError(f"tensor {index} holds {data[1]} bytes of data for a shape of {nbytes} bytes")
        if data[0] % element:
            raise TfliteCheckError(f"tensor {index}'s data is not aligned to its {element}-byte elements")
    _check_quantization(index, tensor, shape)
    return nbytes, data if data is not None and data[1] else None


def _check_offline_plan(raw: bytes, buffer: _Table, tensor_bytes: list) -> None:
    n = len(tensor_bytes)
    data = buffer.vector(BUFFER_DATA, 1)
    want = (3 + n) * 4
    if data is None or data[1] != want:
        raise TfliteCheckError(f"the offline memory plan holds {data[1] if data else 0} bytes, "
                               f"{n} tensors need {want}")
    if data[0] % 4:
        raise TfliteCheckError("the offline memory plan is not 4-byte aligned")
    words = struct.unpack_from(f"<{3 + n}i", raw, data[0])
    if words[1] != 0 or words[2] != n:
        raise TfliteCheckError(f"the offline memory plan is for subgraph {words[1]} with {words[2]} tensors, "
                               f"the model has 1 with {n}")
    for i, (offset, nbytes) in enumerate(zip(words[3:], tensor_bytes)):
        if offset != -1 and (offset < 0 or offset % ARENA_ALIGNMENT or offset + nbytes > MAX_TENSOR_BYTES):
            raise TfliteCheckError(f"the offline memory plan puts tensor {i} at offset {offset} "
                                   f"(not -1 or a multiple of {ARENA_ALIGNMENT})")


def check_structure(data: bytes) -> None:
    """Raises TfliteCheckError (one line) unless `data` is a model TFLM can be handed safely."""
    data = bytes(data)
    if len(data) < 8:
        raise TfliteCheckError(f"{len(data)} bytes is too short for a .tflite")
    if data[4:8] != FILE_IDENTIFIER:
        raise TfliteCheckError("missing the TFL3 file identifier")
    model = _Table(data, _read(data, "<I", 0))
    version = model.scalar(MODEL_VERSION, "<I", 0)
    if version != SCHEMA_VERSION:
        raise TfliteCheckError(f"schema version {version}, expected {SCHEMA_VERSION}")
    graphs = model.tables(MODEL_SUBGRAPHS)
    if graphs is None or len(graphs) != 1:
        raise TfliteCheckError(f"{len(graphs or [])} subgraphs, expected 1")
    buffers, codes = model.tables(MODEL_BUFFERS), model.tables(MODEL_CODES)
    if buffers is None or codes is None:
        raise TfliteCheckError("no buffers or no operator codes")
    graph = graphs[0]
    tensors, operators = graph.tables(GRAPH_TENSORS), graph.tables(GRAPH_OPERATORS)
    inputs, outputs = graph.values(GRAPH_INPUTS, "<i"), graph.values(GRAPH_OUTPUTS, "<i")
    if tensors is None or operators is None or not inputs or not outputs:
        raise TfliteCheckError("the subgraph lacks tensors, operators, inputs or outputs")
    sizes = [_tensor_bytes(i, t, buffers) for i, t in enumerate(tensors)]
    for i, op in enumerate(operators):
        opcode = op.scalar(OP_OPCODE, "<I", 0)
        if opcode >= len(codes):
            raise TfliteCheckError(f"operator {i} uses opcode {opcode} of {len(codes)}")
        _check_indices(f"operator {i} input", op.values(OP_INPUTS, "<i"), len(tensors), optional_allowed=True)
        op_outputs = op.values(OP_OUTPUTS, "<i")
        _check_indices(f"operator {i} output", op_outputs, len(tensors))
        intermediates = op.values(OP_INTERMEDIATES, "<i")
        if intermediates is not None:
            _check_indices(f"operator {i} intermediate", intermediates, len(tensors))
        for output in op_outputs:
            if sizes[output][1] is not None:
                raise TfliteCheckError(f"operator {i} writes tensor {output}, which holds constant data")
    _check_indices("subgraph input", inputs, len(tensors))
    _check_indices("subgraph output", outputs, len(tensors))
    for index in inputs:
        if sizes[index][1] is not None:
            raise TfliteCheckError(f"subgraph input tensor {index} holds constant data")
    for meta in model.tables(MODEL_METADATA) or []:
        buffer = meta.scalar(META_BUFFER, "<I", 0)
        if buffer >= len(buffers):
            raise TfliteCheckError(f"metadata uses buffer {buffer} of {len(buffers)}")
        if meta.string(META_NAME) == OFFLINE_PLAN_NAME:
            _check_offline_plan(data, buffers[buffer], [nbytes for nbytes, _ in sizes])
