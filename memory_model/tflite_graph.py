"""A TFLite graph as the memory model sees it, and its TFLM arena plan.

`read_tflite(bytes)` reads any single-subgraph .tflite (builtin ops, or this
project's custom ops); `plan_graph(graph)` plans it exactly as TFLM's
MicroInterpreter does: greedy head with offline offsets when the model carries
`OfflineMemoryAllocation` metadata, plus the persistent tail.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.errors import UserError

from . import builtin_kernels
from .greedy_planner import ONLINE, Buffer, align_up, maximum_memory_size, plan_offsets, tensor_lifetimes
from .tflm_tail import CUSTOM_OPDATA_BYTES, Tail

ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
            "INT8": 1, "FLOAT64": 8, "UINT32": 4, "UINT16": 2, "INT4": 1}


@dataclass
class TensorInfo:
    shape: tuple
    itemsize: int
    constant: bool
    scales: tuple = ()
    variable: bool = False

    @property
    def nbytes(self) -> int:
        n = self.itemsize
        for d in self.shape:
            n *= d
        return n


@dataclass
class OpInfo:
    op: str                       # builtin name, or the custom code
    inputs: list
    outputs: list
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list
    operators: list
    inputs: list
    outputs: list
    offline_offsets: list = None  # one per tensor, -1 = online; None = no metadata


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema


def read_tflite(data: bytes) -> Graph:
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # flatbuffers raises assorted errors on garbage
        raise UserError(f"not a readable .tflite flatbuffer ({type(exc).__name__}); "
                        f"re-run `mcuformer convert`") from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise UserError("the memory model handles single-subgraph .tflite models only")
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    subgraph = model.subgraphs[0]
    tensors = []
    for t in subgraph.tensors:
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        constant = buffer is not None and buffer.data is not None and len(buffer.data) > 0
        q = t.quantization
        scales = tuple(q.scale) if q is not None and q.scale is not None else ()
        shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
        tensors.append(TensorInfo(shape, ITEMSIZE[type_names[t.type]], constant, scales, bool(t.isVariable)))
    operators = []
    for o in subgraph.operators:
        code = model.operatorCodes[o.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = op_names[builtin]
        if name == "CUSTOM":
            name = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        options = {}
        if o.builtinOptions is not None:
            options = {k.replace("adjX", "adj_x").replace("adjY", "adj_y"): v
                       for k, v in vars(o.builtinOptions).items()}
        operators.append(OpInfo(name, [int(i) for i in o.inputs], [int(i) for i in o.outputs], options))
    offline = None
    for md in model.metadata or []:
        name = md.name.decode() if isinstance(md.name, bytes) else md.name
        if name == "OfflineMemoryAllocation":
            words = np.frombuffer(bytes(model.buffers[md.buffer].data), dtype="<i4")
            offline = [int(v) for v in words[3:3 + int(words[2])]]
    return Graph(tensors, operators, [int(i) for i in subgraph.inputs], [int(i) for i in subgraph.outputs],
                 offline)


@dataclass
class GraphPlan:
    head_bytes: int
    tail_bytes: int
    buffers: list
    offsets: list

    @property
    def arena_bytes(self) -> int:
        return self.head_bytes + self.tail_bytes


def _scratch_requests(graph: Graph, custom_scratch) -> list:
    """(op index, bytes) of every scratch request, in Prepare order."""
    requests = []
    for k, op in enumerate(graph.operators):
        if op.op in CUSTOM_OPDATA_BYTES:
            sizes = [custom_scratch[k]]
        else:
            builtin_kernels.check_supported(op.op)
            sizes = builtin_kernels.scratch_requests(op.op, [graph.tensors[i] for i in op.inputs],
                                                     [graph.tensors[i] for i in op.outputs])
        requests += [(k, s) for s in sizes]
    return requests


def plan_graph(graph: Graph, pointer_size: int = 4, recording: bool = False, custom_scratch=None) -> GraphPlan:
    """TFLM's arena for `graph`. `recording`: the wheel's RecordingMicroAllocator.

    `custom_scratch`: bytes of the custom op's scratch per op index (custom ops only).
    """
    lifetimes = tensor_lifetimes(len(graph.tensors), graph.inputs, graph.outputs,
                                 [(op.inputs, op.outputs) for op in graph.operators])
    buffers = []
    for k, (t, (first, last)) in enumerate(zip(graph.tensors, lifetimes)):
        offline = graph.offline_offsets[k] if graph.offline_offsets is not None else ONLINE
        needs = (not t.constant and not t.variable and t.nbytes != 0) or (t.variable and offline != ONLINE)
        if needs:
            buffers.append(Buffer(align_up(t.nbytes), first, last, offline, f"t{k}"))
    requests = _scratch_requests(graph, custom_scratch)
    for op_index, size in requests:
        buffers.append(Buffer(align_up(size), op_index + 1, op_index + 1, name=f"scratch@{op_index}"))
    offsets = plan_offsets(buffers)
    head = align_up(maximum_memory_size(buffers, offsets))
    return GraphPlan(head, graph_tail(graph, pointer_size, recording, len(requests)), buffers, offsets)


def graph_tail(graph: Graph, pointer_size: int, recording: bool, num_scratch: int, per_op=None) -> int:
    """The persistent tail; `per_op` (a list, one 0 per op) receives the bytes each op allocates."""
    tail = Tail(pointer_size, recording)
    tail.interpreter_start(len(graph.tensors), len(graph.operators))
    per_op = per_op if per_op is not None else [0] * len(graph.operators)

    def charged(k, allocate):
        before = tail.used
        allocate()
        per_op[k] += tail.used - before

    for k, op in enumerate(graph.operators):                     # PrepareNodeAndRegistrationData
        params = builtin_kernels.KERNELS.get(op.op, (None, None))[0]
        if params:
            charged(k, lambda: tail.builtin_data(params))
    for k, op in enumerate(graph.operators):                     # Init: OpData
        if op.op in CUSTOM_OPDATA_BYTES:
            charged(k, lambda: tail.kernel_buffer(CUSTOM_OPDATA_BYTES[op.op]))
        elif builtin_kernels.KERNELS[op.op][1]:
            extra = builtin_kernels.WHEEL_OPDATA_EXTRA.get(op.op, 0) if recording else 0
            charged(k, lambda: tail.kernel_buffer(tail.sizes[builtin_kernels.KERNELS[op.op][1]][0] + extra))
    for k, op in enumerate(graph.operators):                     # Prepare: per-channel data etc.
        if op.op not in CUSTOM_OPDATA_BYTES:
            for size in builtin_kernels.prepare_buffers(op.op, [graph.tensors[i] for i in op.inputs],
                                                        [graph.tensors[i] for i in op.outputs],
                                                        op.options, tail.sizes, wheel=recording):
                charged(k, lambda: tail.kernel_buffer(size))
    tail.interpreter_finish(num_scratch, [len(graph.tensors[i].scales) for i in graph.inputs],
                            [len(graph.tensors[i].scales) for i in graph.outputs])
    return tail.used
