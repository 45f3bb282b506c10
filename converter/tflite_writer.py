"""Serialise a `QModel` as a TFLite flatbuffer (schema version 3) for TFLM.

Custom ops are `BuiltinOperator.CUSTOM` with `custom_code` = the SPEC name and
version 1, their options a FlexBuffer map. Constant buffers start on 16-byte
boundaries; buffer 0 is the empty sentinel that activation tensors use. The
arena plan is the `OfflineMemoryAllocation` metadata (SPEC section 3).
"""
from __future__ import annotations

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers

import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow is imported)
from tensorflow.lite.python import schema_py_generated as schema

from tflm_ops import contract

from .qmodel import FILE_IDENTIFIER, OFFLINE_PLAN_NAME, SCHEMA_VERSION

BUFFER_ALIGNMENT = 16
TENSOR_TYPES = {"int8": schema.TensorType.INT8, "int32": schema.TensorType.INT32}


class _AlignedBufferT(schema.BufferT):
    """BufferT whose data vector starts on a BUFFER_ALIGNMENT boundary of the file."""

    def Pack(self, builder):
        data = None
        if self.data is not None:
            raw = np.ascontiguousarray(self.data).view(np.uint8).reshape(-1).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _buffer(data=None) -> schema.BufferT:
    b = _AlignedBufferT()
    b.data = data
    return b


def _quantization(t):
    """Activation quantization only: the kernels read constants' scales from the rq tables."""
    if not t.scale or t.data is not None:
        return None
    q = schema.QuantizationParametersT()
    q.scale = [float(s) for s in t.scale]
    q.zeroPoint = [int(z) for z in t.zero_point]
    q.quantizedDimension = 0
    return q


def custom_options(options: dict) -> np.ndarray:
    return np.frombuffer(flexbuffers.Dumps({k: int(v) for k, v in options.items()}), np.uint8)


def to_flatbuffer(qmodel) -> bytes:
    if qmodel.offsets is None or len(qmodel.offsets) != len(qmodel.tensors):
        raise ValueError("the quantized model has no offline memory plan for its tensors")
    model = schema.ModelT()
    model.version = SCHEMA_VERSION
    model.description = qmodel.description
    model.buffers = [_buffer()]
    subgraph = schema.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = []
    for t in qmodel.tensors:
        tensor = schema.TensorT()
        tensor.name = t.name
        tensor.shape = list(t.shape)
        tensor.type = TENSOR_TYPES[t.dtype]
        tensor.quantization = _quantization(t)
        tensor.buffer = 0
        if t.data is not None:
            model.buffers.append(_buffer(t.data))
            tensor.buffer = len(model.buffers) - 1
        subgraph.tensors.append(tensor)
    codes = sorted({op.code for op in qmodel.ops})
    model.operatorCodes = []
    for code in codes:
        oc = schema.OperatorCodeT()
        oc.builtinCode = schema.BuiltinOperator.CUSTOM
        oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        oc.customCode = code
        oc.version = contract.VERSIONS[code]
        model.operatorCodes.append(oc)
    subgraph.operators = []
    for op in qmodel.ops:
        o = schema.OperatorT()
        o.opcodeIndex = codes.index(op.code)
        o.inputs = list(op.inputs)
        o.outputs = [op.output]
        o.customOptions = custom_options(op.options)
        o.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
        subgraph.operators.append(o)
    subgraph.inputs = [qmodel.input]
    subgraph.outputs = [qmodel.output]
    model.subgraphs = [subgraph]
    plan = np.array([1, 0, len(qmodel.tensors), *qmodel.offsets], np.int32)
    model.buffers.append(_buffer(plan))
    meta = schema.MetadataT()
    meta.name = OFFLINE_PLAN_NAME
    meta.buffer = len(model.buffers) - 1
    model.metadata = [meta]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
