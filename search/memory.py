"""The one memory model: TFLM arena (head + tail), flash and MACs of a subnet.

The converter writes `custom_graph_plan(config, techniques).tensor_offsets`
into the model's `OfflineMemoryAllocation` metadata (one offset per activation
tensor in SPEC.md section 3 order, then -1 for every constant tensor):

    from search.memory import Techniques, custom_graph_plan
    plan = custom_graph_plan(config)                     # all techniques on
    offsets = plan.tensor_offsets                        # [image, tokens_0, ..., tokens_2d, logits]
    plan.head_bytes, plan.scratch_offsets, plan.tail_bytes(pointer_size=4)

The plan is what TFLM's GreedyMemoryPlanner computes for that graph with those
offline offsets (the scratch buffers are planned online around them), so the
predicted head equals TFLM's planned bytes exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

from .greedy_planner import Buffer, align_up, maximum_memory_size, plan_offsets
from . import tflm_tail


@dataclass(frozen=True)
class Techniques:
    """MCUFormer's scheduling techniques, each switchable.

    operator_integration: fused custom ops (attention row by row, MLP per token);
        off = the plain TFLM builtin-op graph of TFLiteConverter (then the other
        two must be off too: builtin graphs have no offline in-place plan).
    patch_decomposition: the patch embedding writes its tokens over the image.
    token_overwrite: every block writes its output over its input tokens.
    """
    operator_integration: bool = True
    patch_decomposition: bool = True
    token_overwrite: bool = True

    def __post_init__(self):
        if not self.operator_integration and (self.patch_decomposition or self.token_overwrite):
            raise ValueError("patch_decomposition and token_overwrite need operator_integration "
                             "(the builtin-op graph has no in-place plan); use Techniques.off()")

    @classmethod
    def off(cls) -> "Techniques":
        return cls(False, False, False)

    def describe(self) -> str:
        on = [n for n in ("operator_integration", "patch_decomposition", "token_overwrite") if getattr(self, n)]
        return "+".join(on) if on else "off (builtin ops)"


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _segments_bytes(sizes) -> int:
    """Total bytes of a scratch area of int8/int32 segments laid out ALIGN4 (SPEC section 0)."""
    end = 0
    for size in sizes:
        if size:
            end = _align4(end) + size
    return end


def custom_op_names(config) -> list:
    names = ["MCUF_PATCH_EMBED"]
    for _ in range(config.depth):
        names += ["MCUF_ATTENTION", "MCUF_MLP"]
    return names + ["MCUF_HEAD"]


def scratch_bytes(config) -> list:
    """Bytes each custom op requests with RequestScratchBufferInArena (SPEC section 2), op order."""
    t, e = config.num_tokens, config.embed_dim
    sizes = [_segments_bytes([config.grid * e, config.patch_dim])]
    for i in range(config.depth):
        d = config.qkv_dim[i]
        attn_rank = max(config.qkv_rank[i], config.proj_rank[i])
        sizes.append(_segments_bytes([t * d, t * d, e, attn_rank, d, d, 4 * t]))
        mlp_rank = max(config.fc1_rank[i], config.fc2_rank[i])
        sizes.append(_segments_bytes([e, mlp_rank, config.mlp_hidden[i]]))
    sizes.append(_segments_bytes([e, 4 * e, e]))
    return sizes


def activation_names(config) -> list:
    return ["image"] + [f"tokens_{k}" for k in range(2 * config.depth + 1)] + ["logits"]


def activation_bytes(config) -> list:
    tokens = config.num_tokens * config.embed_dim
    return ([config.image_size * config.image_size * config.channels]
            + [tokens] * (2 * config.depth + 1) + [config.num_classes])


@dataclass
class ArenaPlan:
    """A TFLM arena plan of the custom-op graph."""
    tensor_names: list
    tensor_offsets: list          # offline offsets written by the converter, activation order
    tensor_bytes: list
    scratch_bytes: list           # requested bytes, op order
    scratch_offsets: list         # where TFLM's planner puts them
    head_bytes: int               # GreedyMemoryPlanner::GetMaximumMemorySize
    config: object
    techniques: Techniques

    def tail_bytes(self, pointer_size: int = 4) -> int:
        """TFLM's persistent (tail) allocations for this graph (4 = Cortex-M, 8 = x86_64 host)."""
        return tflm_tail.custom_graph_tail(self.config, pointer_size)

    def arena_bytes(self, pointer_size: int = 4) -> int:
        """arena_used_bytes(): head + tail."""
        return self.head_bytes + self.tail_bytes(pointer_size)


def _activation_lifetimes(depth: int) -> list:
    """(first, last) scope of image, tokens_0..tokens_2d, logits: op k runs in scope k+1."""
    n_ops = 2 * depth + 2
    lifetimes = [(0, 1)]                                   # image: subgraph input, read by op 0
    lifetimes += [(k + 1, k + 2) for k in range(2 * depth + 1)]
    lifetimes.append((n_ops, n_ops))                       # logits: output of the last op
    return lifetimes


def _shared_groups(depth: int, techniques: Techniques) -> list:
    """Group id of each activation tensor; tensors of one group share one offset."""
    groups = [0, 0 if techniques.patch_decomposition else 1]
    next_id = groups[1] + 1
    for _ in range(2 * depth):
        if techniques.token_overwrite:
            groups.append(groups[-1])
        else:
            groups.append(next_id)
            next_id += 1
    groups.append(next_id)                                 # logits never aliases
    return groups


def custom_graph_plan(config, techniques: Techniques = Techniques()) -> ArenaPlan:
    """The arena plan of the custom-op graph (SPEC sections 2-3) of `config`.

    Activation offsets: tensors that share memory under the techniques are
    merged (size = the largest, lifetime = the union) and the merged buffers are
    planned by TFLM's greedy planner; then TFLM's own procedure places every
    op's scratch buffer online around these offline offsets.
    """
    if not techniques.operator_integration:
        raise ValueError("the custom-op graph always integrates operators; "
                         "use builtin_graph_plan for the builtin-op graph")
    sizes = activation_bytes(config)
    lifetimes = _activation_lifetimes(config.depth)
    groups = _shared_groups(config.depth, techniques)
    n_groups = groups[-1] + 1
    group_size = [0] * n_groups
    group_first = [1 << 30] * n_groups
    group_last = [-1] * n_groups
    for g, size, (first, last) in zip(groups, sizes, lifetimes):
        group_size[g] = max(group_size[g], align_up(size))
        group_first[g] = min(group_first[g], first)
        group_last[g] = max(group_last[g], last)
    group_offsets = plan_offsets([Buffer(group_size[g], group_first[g], group_last[g]) for g in range(n_groups)])
    tensor_offsets = [group_offsets[g] for g in groups]

    scratch = scratch_bytes(config)
    buffers = [Buffer(align_up(size), first, last, offset, name)
               for size, (first, last), offset, name in
               zip(sizes, lifetimes, tensor_offsets, activation_names(config))]
    buffers += [Buffer(align_up(size), op + 1, op + 1, name=f"scratch_{op}") for op, size in enumerate(scratch)]
    offsets = plan_offsets(buffers)
    n_act = len(sizes)
    return ArenaPlan(tensor_names=activation_names(config), tensor_offsets=tensor_offsets,
                     tensor_bytes=sizes, scratch_bytes=scratch, scratch_offsets=offsets[n_act:],
                     head_bytes=maximum_memory_size(buffers, offsets), config=config, techniques=techniques)
