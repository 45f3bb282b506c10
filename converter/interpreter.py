"""The reference interpreter: parse a written .tflite, check it, run it in numpy.

`load_tflite` turns the flatbuffer back into a `QModel` (a corrupt, truncated
or foreign file is a UserError) and refuses, with one line naming the op and
field, every op the kernels' Prepare would reject (tflm_ops/validity.py);
`check_tflite` is that check alone, for `mcuformer build`. `run_tflite` runs
int8 images through the model with tflm_ops/reference.py, bit-exact to the C
kernels. Users measure int8 accuracy without a board with it. No TensorFlow:
the schema is the tflite-micro wheel's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import UserError
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
from tflm_ops import contract
from tflm_ops.validity import read_options

from . import tflite_checks
from .qmodel import FILE_IDENTIFIER, OFFLINE_PLAN_NAME, SCHEMA_VERSION, QModel, Op, Tensor, check_prepare, run

TYPE_NAMES = {schema.TensorType.INT8: "int8", schema.TensorType.INT32: "int32"}


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _parse(buf: bytes):
    if len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
        raise ValueError("missing the TFL3 file identifier")
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))


def _tensor(t, buffers) -> Tensor:
    dtype = TYPE_NAMES.get(t.type)
    if dtype is None:
        raise ValueError(f"tensor {_text(t.name)!r} has type {t.type}, expected int8 or int32")
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    raw = buffers[t.buffer].data if 0 < t.buffer < len(buffers) else None
    data = None
    if raw is not None and len(raw):
        data = np.frombuffer(np.asarray(raw, np.uint8).tobytes(), np.dtype(dtype))
        if data.size != int(np.prod(shape)):
            raise ValueError(f"tensor {_text(t.name)!r}: {data.size} values for shape {shape}")
        data = data.reshape(shape)
    q = t.quantization
    scale = [] if q is None or q.scale is None else [float(s) for s in q.scale]
    zp = [] if q is None or q.zeroPoint is None else [int(z) for z in q.zeroPoint]
    return Tensor(_text(t.name), shape, dtype, data, scale, zp)


def _offsets(model, n_tensors):
    for meta in model.metadata or []:
        if _text(meta.name) == OFFLINE_PLAN_NAME:
            plan = np.frombuffer(np.asarray(model.buffers[meta.buffer].data, np.uint8).tobytes(), np.int32)
            if len(plan) != 3 + n_tensors or plan[0] != 1 or plan[2] != n_tensors:
                raise ValueError("OfflineMemoryAllocation metadata does not match the tensors")
            return [int(v) for v in plan[3:]]
    return None


def _options(raw):
    """The FlexBuffer map as a dict, or None when it is not one (Prepare rejects it, with the op named)."""
    return read_options(np.asarray(raw, np.uint8).tobytes())


def _build(model) -> QModel:
    if model.version != SCHEMA_VERSION:
        raise ValueError(f"schema version {model.version}, expected {SCHEMA_VERSION}")
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise ValueError("expected exactly one subgraph")
    sg = model.subgraphs[0]
    tensors = [_tensor(t, model.buffers) for t in sg.tensors]
    codes = []
    for oc in model.operatorCodes:
        code = _text(oc.customCode) if oc.customCode is not None else None
        if oc.builtinCode != schema.BuiltinOperator.CUSTOM or code not in contract.OPS:
            raise ValueError(f"operator {code or oc.builtinCode} is not one of the custom ops "
                             f"{', '.join(contract.OPS)}")
        if oc.version != contract.VERSIONS[code]:
            raise ValueError(f"{code} version {oc.version} is not implemented ({contract.VERSIONS[code]} is)")
        codes.append(code)
    ops = []
    for o in sg.operators:
        inputs, outputs = [int(i) for i in o.inputs], [int(i) for i in o.outputs]
        if len(outputs) != 1 or not all(0 <= i < len(tensors) for i in inputs + outputs):
            raise ValueError("an operator has invalid tensor indices")
        ops.append(Op(codes[o.opcodeIndex], inputs, outputs[0], _options(o.customOptions)))
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise ValueError("expected one subgraph input and one output")
    return QModel(tensors, ops, int(sg.inputs[0]), int(sg.outputs[0]), _offsets(model, len(tensors)),
                  _text(model.description or ""))


def load_tflite(path) -> QModel:
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        tflite_checks.check_structure(buf)      # the bounds the flatbuffers reader below trusts
        model = _build(_parse(buf))
    except Exception as exc:    # any parse failure of untrusted bytes means a bad file
        raise UserError(f"{path} is not a valid MCUFormer .tflite (corrupt or truncated: {exc}); "
                        f"re-run `mcuformer convert`") from None
    check_prepare(model, path)
    return model


def check_tflite(path) -> None:
    """UserError (one line) unless the file parses and every op passes the kernels' Prepare."""
    load_tflite(path)


def run_tflite(path, images_q, batch: int = 256, progress: bool = False) -> np.ndarray:
    """int8 logits of int8 images [N, H, W, C] through the .tflite at `path`."""
    model = load_tflite(path)
    want = model.tensors[model.input].shape[1:]
    images_q = np.asarray(images_q)
    if images_q.ndim != 4 or tuple(images_q.shape[1:]) != tuple(want):
        raise UserError(f"images have shape {images_q.shape}, the model expects (N, {', '.join(map(str, want))})")
    try:
        return run(model, images_q, batch, progress)
    except (ValueError, IndexError, KeyError, OverflowError) as exc:
        raise UserError(f"{path}: the model's ops do not match tflm_ops/SPEC.md ({exc})") from None
