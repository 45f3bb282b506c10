"""Per-op costs of a .tflite in TFLM: arena, persistent bytes, flash, MACs, instructions.

Everything comes from the one memory model (`tflite_graph.plan_graph`, the
plan whose total equals TFLM's arena_used_bytes()), split by op:

* arena: during op k (scope k + 1) the head holds the activation tensors live
  then and the op's scratch; `head_in_use` is the highest byte in use, so the
  planned head is the largest of them. The persistent tail is what each op
  allocates (options, OpData, Prepare buffers) plus the interpreter's share
  (allocator objects, one TfLiteEvalTensor per tensor, one NodeAndRegistration
  per op, scratch handles, input/output tensors, alignment), so
  arena = max(head_in_use) + sum(persistent) + interpreter.
* flash: each op's constant buffers as written (16-aligned), the rest of the
  file (tensor and op tables, metadata) as one "flatbuffer structure" row, so
  the rows add up to the file's size.
* MACs: the custom ops' from the ArchConfig (keras_supernet/arch.py), builtin
  ops' from their tensor shapes.
* instructions: custom ops only, an ESTIMATE from `op_instructions.py`
  (figures fitted to instruction counts measured under QEMU).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import op_instructions
from .memory import instruction_estimate, scratch_bytes
from .tflite_graph import graph_tail, plan_graph, read_tflite

FLASH_ALIGNMENT = 16          # the writer's (and TFLiteConverter's) constant buffer alignment


@dataclass
class OpCost:
    index: int
    op: str                   # MCUF_ATTENTION, FULLY_CONNECTED, ...
    label: str                # block0.attn, or the builtin op with its index
    activation_bytes: int     # activation tensors live in the arena during the op (distinct bytes)
    scratch_bytes: int
    head_in_use: int          # highest arena byte in use during the op (the head must reach it)
    persistent_bytes: int     # tail bytes the op allocates
    flash_bytes: int          # its constant buffers, 16-aligned
    macs: int
    instructions: int | None = None      # estimate (custom ops)

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class GraphCost:
    ops: list
    head_bytes: int
    tail_bytes: int
    interpreter_tail_bytes: int   # the tail no single op owns
    file_bytes: int
    flatbuffer_structure_bytes: int
    pointer_size: int
    instruction_figures: dict = field(default_factory=dict)

    @property
    def arena_bytes(self) -> int:
        return self.head_bytes + self.tail_bytes

    @property
    def macs(self) -> int:
        return sum(o.macs for o in self.ops)

    @property
    def instructions(self) -> int | None:
        counts = [o.instructions for o in self.ops]
        return None if any(c is None for c in counts) else sum(counts)

    def to_dict(self) -> dict:
        return {"ops": [o.to_dict() for o in self.ops], "head_bytes": self.head_bytes,
                "tail_bytes": self.tail_bytes, "interpreter_tail_bytes": self.interpreter_tail_bytes,
                "arena_bytes": self.arena_bytes, "file_bytes": self.file_bytes,
                "flatbuffer_structure_bytes": self.flatbuffer_structure_bytes, "macs": self.macs,
                "instructions": self.instructions, "pointer_size": self.pointer_size}


def _union_bytes(spans) -> int:
    total, end = 0, 0
    for start, stop in sorted(spans):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _builtin_macs(op, tensors) -> int:
    inputs = [tensors[i] if i >= 0 else None for i in op.inputs]
    out = tensors[op.outputs[0]]
    out_elems = out.nbytes // out.itemsize
    if op.op == "FULLY_CONNECTED":
        return out_elems * inputs[1].shape[-1]
    if op.op in ("CONV_2D",):
        return out_elems * inputs[1].shape[1] * inputs[1].shape[2] * inputs[1].shape[3]
    if op.op == "DEPTHWISE_CONV_2D":
        return out_elems * inputs[1].shape[1] * inputs[1].shape[2]
    if op.op == "BATCH_MATMUL":
        a = inputs[0].shape
        return out_elems * (a[-2] if op.options.get("adj_x") else a[-1])
    return 0


def _custom_labels(config) -> list:
    return [f"stem{j}" for j in range(len(config.stem))] + ["patch_embed"] + [f"block{i}.{p}" for i in range(config.depth) for p in ("attn", "mlp")] + ["head"]


def graph_costs(tflite: bytes, pointer_size: int = 4, config=None) -> GraphCost:
    """Per-op costs of a .tflite; `config` (ArchConfig) for this project's custom-op graphs."""
    graph = read_tflite(tflite)
    custom = config is not None
    plan = plan_graph(graph, pointer_size, custom_scratch=scratch_bytes(config) if custom else None)
    per_op = [0] * len(graph.operators)
    tail = graph_tail(graph, pointer_size, False, sum(1 for b in plan.buffers if b.name.startswith("scratch@")),
                      per_op=per_op)
    spans = [(b, off) for b, off in zip(plan.buffers, plan.offsets)]
    macs = list(config.layer_macs().values()) if custom else None
    estimates = instruction_estimate(config) if custom else None
    labels = _custom_labels(config) if custom else None
    seen_constants, ops = set(), []
    for k, op in enumerate(graph.operators):
        live = [(b, off) for b, off in spans if b.first <= k + 1 <= b.last]
        scratch = sum(b.size for b, _ in live if b.name == f"scratch@{k}")
        acts = [(off, off + b.size) for b, off in live if not b.name.startswith("scratch@")]
        flash = 0
        for i in op.inputs:
            if i >= 0 and graph.tensors[i].constant and i not in seen_constants:
                seen_constants.add(i)
                flash += -(-graph.tensors[i].nbytes // FLASH_ALIGNMENT) * FLASH_ALIGNMENT
        ops.append(OpCost(
            index=k, op=op.op, label=labels[k] if custom else f"{op.op.lower()}#{k}",
            activation_bytes=_union_bytes(acts), scratch_bytes=scratch,
            head_in_use=max((off + b.size for b, off in live), default=0), persistent_bytes=per_op[k],
            flash_bytes=flash, macs=macs[k] if custom else _builtin_macs(op, graph.tensors),
            instructions=estimates[k] if custom else None))
    assert tail == plan.tail_bytes
    return GraphCost(ops=ops, head_bytes=plan.head_bytes, tail_bytes=tail,
                     interpreter_tail_bytes=tail - sum(per_op), file_bytes=len(tflite),
                     flatbuffer_structure_bytes=len(tflite) - sum(o.flash_bytes for o in ops),
                     pointer_size=pointer_size,
                     instruction_figures=op_instructions.FIGURES if custom else {})
