"""The quantized model in memory: tensors (SPEC section 3 order) and custom ops.

The quantizer builds it, the flatbuffer writer serialises it, the reader
parses a .tflite back into it, `check_prepare` refuses what the kernels'
Prepare would (tflm_ops/validity.py), and `run` executes it with the numpy
reference ops of tflm_ops/reference.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from common.errors import UserError
from tflm_ops import contract, reference, validity

DTYPES = {"int8": np.int8, "int32": np.int32}
# The flatbuffer: TFLite schema version 3, and the metadata holding the offline arena plan (SPEC 3).
FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
OFFLINE_PLAN_NAME = "OfflineMemoryAllocation"


@dataclass
class Tensor:
    name: str
    shape: tuple
    dtype: str                                  # "int8" | "int32"
    data: np.ndarray | None = None              # constants only
    scale: list = field(default_factory=list)   # per tensor (1 value) or per channel
    zero_point: list = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(DTYPES[self.dtype]).itemsize

    @property
    def zp(self) -> int:
        return int(self.zero_point[0]) if self.zero_point else 0


@dataclass
class Op:
    code: str
    inputs: list                                # tensor indices, SPEC order
    output: int
    options: dict


@dataclass
class QModel:
    tensors: list
    ops: list
    input: int
    output: int
    offsets: list | None = None                 # offline arena offsets (-1 for constants)
    description: str = "MCUFormer int8 ViT"

    @property
    def activations(self) -> list:
        return [t for t in self.tensors if t.data is None]

    def index(self, name: str) -> int:
        return next(i for i, t in enumerate(self.tensors) if t.name == name)

    def constant_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.data is not None)


def quantize_images(images) -> np.ndarray:
    """Float pixels/255 -> the fixed int8 model input (tflm_ops.contract.quantize_input)."""
    return contract.quantize_input(np.asarray(images, np.float64) * 255.0)


def _info(t: Tensor) -> validity.TensorInfo:
    return validity.TensorInfo(t.dtype, tuple(t.shape), t.zp, t.data)


def prepare_error(model: QModel) -> str | None:
    """'op I (CODE): reason' for the first op whose Prepare would fail in TFLM, or None."""
    for i, op in enumerate(model.ops):
        error = validity.prepare_error(op.code, op.options, [_info(model.tensors[j]) for j in op.inputs],
                                       _info(model.tensors[op.output]))
        if error:
            return f"op {i} ({op.code}): {error}"
    return None


def check_prepare(model: QModel, what) -> None:
    """UserError (one line) when the kernels' Prepare would reject an op of the model."""
    error = prepare_error(model)
    if error:
        raise UserError(f"{what}: {error}; the MCUFormer kernels reject this model in Prepare "
                        f"(re-run `mcuformer convert`)")


def run(model: QModel, images_q, batch: int = 256, progress: bool = False) -> np.ndarray:
    """int8 logits [N, K] of int8 images [N, H, W, C], op by op with the numpy reference."""
    images_q = np.asarray(images_q, np.int8)
    out = []
    for start in tqdm(range(0, len(images_q), batch), desc="int8 reference", unit="batch",
                      disable=not progress):
        values = {model.input: images_q[start:start + batch]}
        for op in model.ops:
            inputs = [values[i] if model.tensors[i].data is None else model.tensors[i].data for i in op.inputs]
            zin, zout = model.tensors[op.inputs[0]].zp, model.tensors[op.output].zp
            result = reference.run_op(op.code, inputs, op.options, zin, zout)
            values[op.output] = result.reshape((len(result),) + tuple(model.tensors[op.output].shape[1:]))
        out.append(values[model.output])
    return np.concatenate(out)


def dequantize(t: Tensor, q) -> np.ndarray:
    return (np.asarray(q, np.float64) - t.zp) * t.scale[0]
