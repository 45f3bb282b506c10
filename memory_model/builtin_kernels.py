"""What each TFLM reference kernel (int8) allocates, per node: parsed builtin
options, persistent buffers (Init/Prepare, 16-aligned) and scratch requests.

Read from tensorflow/lite/micro/kernels/*.cc and core/api/flatbuffer_conversions.cc
at TFLM 90b983c; struct sizes come from tflm_structs.py.
"""
from __future__ import annotations

from common.errors import UserError

# op -> (builtin options struct or None, OpData struct allocated in Init or None)
KERNELS = {
    "CONV_2D": ("TfLiteConvParams", "OpDataConv"),
    "FULLY_CONNECTED": ("TfLiteFullyConnectedParams", "OpDataFullyConnected"),
    "BATCH_MATMUL": ("TfLiteBatchMatMulParams", "OpDataBatchMatmul"),
    "ADD": ("TfLiteAddParams", "OpDataAdd"),
    "SUB": ("TfLiteSubParams", "OpDataSub"),
    "MUL": ("TfLiteMulParams", "OpDataMul"),
    "MEAN": ("TfLiteReducerParams", "OpDataReduce"),
    "SOFTMAX": ("TfLiteSoftmaxParams", "SoftmaxParams"),
    "LOGISTIC": (None, "OpDataLogistic"),
    "RSQRT": (None, "OpDataAbsRsqrt"),
    "SQUARED_DIFFERENCE": (None, "SquaredDifferenceOpData"),
    "STRIDED_SLICE": ("TfLiteStridedSliceParams", "StridedSliceParams"),
    "RESHAPE": ("TfLiteReshapeParams", None),
    "SHAPE": ("TfLiteShapeParams", None),
    "PACK": ("TfLitePackParams", None),
    "CONCATENATION": ("TfLiteConcatenationParams", "ConcatenationOpData"),
    "TRANSPOSE": (None, None),
}


# The tflite-micro pip wheel (0.dev20261023, TFLM 8f6596d, newer than the pinned
# 90b983c) differs in a few kernels; measured with its RecordingMicroAllocator on
# single-op models (tests/test_memory_builtin.py re-checks the totals):
# FULLY_CONNECTED and CONV_2D OpData are 8 B larger, BATCH_MATMUL allocates one
# more TfLiteIntArray of the output's rank.
WHEEL_OPDATA_EXTRA = {"FULLY_CONNECTED": 8, "CONV_2D": 8}


def _int_array_bytes(rank: int) -> int:
    return 4 + 4 * rank                                   # TfLiteIntArrayGetSizeInBytes


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_supported(op: str) -> None:
    if op not in KERNELS:
        raise UserError(f"the memory model has no data for TFLM builtin op {op}; "
                        f"modelled ops: {', '.join(sorted(KERNELS))}")


def prepare_buffers(op, inputs, outputs, options, sizes, wheel: bool = False) -> list:
    """Persistent buffers a kernel's Prepare allocates (bytes each, 16-aligned).

    `inputs`/`outputs`: tensor infos (shape, itemsize, scales); `sizes`: struct table.
    """
    if op in ("CONV_2D", "FULLY_CONNECTED"):
        channels = outputs[0].shape[-1]
        per_channel = op == "CONV_2D" or len(inputs[1].scales) > 1
        return [4 * channels, 4 * channels] if per_channel else []
    if op == "BATCH_MATMUL":
        out = [sizes["QuantizationOpDataBatchMatmul"][0]]
        for operand, transposed in ((inputs[0], options.get("adj_x", False)),
                                    (inputs[1], not options.get("adj_y", False))):
            if transposed:     # AllocInitTransposeTensorFromTfLiteTensor
                out += [sizes["TfLiteEvalTensor"][0], _int_array_bytes(len(operand.shape)),
                        _numel(operand.shape) * operand.itemsize]
        if wheel:
            out.append(_int_array_bytes(len(outputs[0].shape)))
        return out
    return []


def scratch_requests(op, inputs, outputs) -> list:
    """Bytes of each RequestScratchBufferInArena call of the kernel's Prepare (int8)."""
    if op == "MEAN":
        return [4 * _numel(outputs[0].shape), 4 * len(inputs[0].shape), 4 * _numel(inputs[1].shape)]
    return []
