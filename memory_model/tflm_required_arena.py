"""The smallest arena with which TFLM's AllocateTensors (and then Invoke) succeeds.

`arena_used_bytes()` (memory.py: planned head + persistent tail) is what the
arena holds once AllocateTensors is done. While it runs, TFLM needs more, in
the head, for a while (micro_allocator.cc, micro_interpreter.cc,
micro_allocation_info.cc, single_arena_buffer_allocator.cc at TFLM 90b983c):

1. StartModelAllocation reserves the head for 12 (kMaxScratchBuffersPerOp)
   ScratchBufferRequests; after each op's Prepare the head grows to hold
   (requests so far + 12) of them.
2. Each op's Prepare allocates temp TfLiteTensors (and, for a quantized
   tensor, its TfLiteAffineQuantization and zero-point TfLiteIntArray) above
   that head; DeallocateTemp does not give bytes back, only the reset after the
   op does, so one Prepare holds all of its temp tensors at once.
3. CommitStaticMemoryPlan allocates, above the request head, one size_t per
   subgraph and an AllocationInfo per tensor and per scratch buffer, then hands
   the rest of the free arena (16-aligned at both ends) to the GreedyMemoryPlanner,
   which needs 40 B for every buffer it plans.
4. Only then is the head shrunk to the plan, and the input/output TfLiteTensors
   are allocated from the tail.

The tail (persistent allocations, aligned down from the arena end) is the same
sequence as tflm_tail.py. Every allocation must fit at the moment it is made,
so the required arena is the smallest size that leaves no allocation short.
(TFLM itself checks a little less: PrepareSubgraphs ignores a failed head
resize, which only happens when the next allocation fails anyway, and
AllocateTemp's unsigned size check would pass a start aligned past the tail.
Asking everything to fit is what the bisections in tests/test_required_arena.py
found, to the byte.) Custom-op graphs only: the builtin kernels' Prepare-time
allocations are not modelled.

Alignment: the arena start is 16-aligned (the apps' `alignas(16)` array, the
host runner's aligned buffer; an unaligned start loses up to 15 B more). The
arena end need not be: the tail aligns each allocation down from wherever the
end is, so the minimum is exact to the byte, not a multiple of 16. All tail
alignments divide 16, so shifting the end by 16 shifts every tail address by
16: `required_bytes` simulates the 16 residues of the end once each.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from . import tflm_tail
from .greedy_planner import ARENA_ALIGNMENT, align_up

PLANNER_BYTES_PER_BUFFER = 40       # GreedyMemoryPlanner::per_buffer_size(): 10 ints per buffer
MAX_SCRATCH_REQUESTS_PER_OP = 12    # kMaxScratchBuffersPerOp


@dataclass(frozen=True)
class OpAllocations:
    """What one op allocates during AllocateTensors."""
    init_bytes: int = 0             # Init's AllocatePersistentBuffer (its OpData), 16-aligned
    temp_tensors: tuple = ()        # Prepare's temp TfLiteTensors, in order: quantization channels of each (0 = none)
    scratch_requests: int = 0       # Prepare's RequestScratchBufferInArena calls


@dataclass(frozen=True)
class GraphAllocations:
    """One subgraph as AllocateTensors sees it (no variables, no builtin options)."""
    num_tensors: int
    ops: tuple                      # OpAllocations, in graph order
    planned_tensors: int            # tensors the planner places (non-constant, non-empty)
    input_channels: tuple           # quantization channels of each subgraph input
    output_channels: tuple


def _align_down(n: int, alignment: int) -> int:
    return n - n % alignment


class _Arena:
    """SingleArenaBufferAllocator with addresses relative to the 16-aligned arena start.

    The head side (head, temp) does not depend on the arena size, so it is
    simulated once; the tail side is recorded as its allocations, to be placed
    down from any end later. `needs[k]`: the highest head-side address that
    must stay at or below the tail after its first k allocations.
    """

    def __init__(self, sizes: dict):
        self.sizes = sizes
        self.head = self.temp_end = 0
        self.tail_allocations = []                          # (size, alignment), in order
        self.needs = {}

    def need(self, address: int) -> None:
        k = len(self.tail_allocations)
        self.needs[k] = max(self.needs.get(k, address), address)

    def persistent(self, size: int, alignment: int) -> None:
        """AllocatePersistentBuffer: aligned down below the tail, must not go below the head."""
        self.tail_allocations.append((size, alignment))
        self.need(self.head)

    def persistent_struct(self, name: str, count: int = 1) -> None:
        size, alignment = self.sizes[name]
        self.persistent(size * count, alignment)

    def temp(self, size: int, alignment: int) -> None:
        """AllocateTemp: aligned up above the last temp allocation, must end below the tail."""
        self.temp_end = align_up(self.temp_end, alignment) + size
        self.need(self.temp_end)

    def temp_struct(self, name: str, count: int = 1) -> None:
        size, alignment = self.sizes[name]
        self.temp(size * count, alignment)

    def resize_head(self, size: int) -> None:
        """ResizeBuffer of the one resizable buffer at the (16-aligned) arena start."""
        self.head = self.temp_end = size
        self.need(size)

    def reset_temp(self) -> None:
        self.temp_end = self.head


@lru_cache(maxsize=4096)
def _temp_tensors_bytes(start: int, temp_tensors: tuple, pointer_size: int) -> int:
    """Bytes from `start` (mod 16) to the end of MicroAllocator::AllocateTempTfLiteTensor's
    allocations for tensors of these quantization channels, made one after another."""
    size, alignment = tflm_tail.struct_sizes(pointer_size)["TfLiteTensor"]
    q_size, q_alignment = tflm_tail.struct_sizes(pointer_size)["TfLiteAffineQuantization"]
    end = start
    for channels in temp_tensors:
        end = align_up(end, alignment) + size
        if channels:
            end = align_up(end, q_alignment) + q_size
            end = align_up(end, 4) + 4 + 4 * channels       # zero_point TfLiteIntArray
    return end - start


def _persistent_tensor(arena: _Arena, channels: int) -> None:
    """MicroAllocator::AllocatePersistentTfLiteTensor."""
    arena.persistent_struct("TfLiteTensor")
    if channels:
        arena.persistent_struct("TfLiteAffineQuantization")
        arena.persistent(4 + 4 * channels, 4)


def _allocate_tensors(graph: GraphAllocations, sizes: dict, pointer_size: int) -> _Arena:
    """MicroInterpreter's constructor and AllocateTensors, in TFLM's order, up to the
    head reservation of the plan (the plan's head is checked against the final tail)."""
    arena = _Arena(sizes)
    for name in ("SingleArenaBufferAllocator", "GreedyMemoryPlanner", "MicroAllocator"):
        arena.persistent_struct(name)                       # MicroAllocator::Create
    arena.persistent_struct("MicroBuiltinDataAllocator")    # StartModelAllocation
    request = sizes["ScratchBufferRequest"][0]
    arena.resize_head(request * MAX_SCRATCH_REQUESTS_PER_OP)
    arena.persistent_struct("SubgraphAllocations")
    arena.persistent_struct("TfLiteEvalTensor", graph.num_tensors)
    arena.persistent_struct("NodeAndRegistration", len(graph.ops))
    for op in graph.ops:                                    # InitSubgraphs
        if op.init_bytes:
            arena.persistent(op.init_bytes, tflm_tail.KERNEL_ALIGNMENT)
    requests = 0
    for op in graph.ops:                                    # PrepareSubgraphs
        if op.temp_tensors:
            arena.temp(_temp_tensors_bytes(arena.temp_end % ARENA_ALIGNMENT, op.temp_tensors, pointer_size), 1)
        requests += op.scratch_requests
        arena.reset_temp()                                  # FinishPrepareNodeAllocations
        arena.resize_head(request * (requests + MAX_SCRATCH_REQUESTS_PER_OP))
    if requests:                                            # FinishModelAllocation
        arena.persistent_struct("ScratchBufferHandle", requests)
    arena.temp_struct("size_t")                             # CommitStaticMemoryPlan: subgraph offsets
    arena.temp_struct("AllocationInfo", graph.num_tensors + requests)
    # The planner gets the free arena between the temps and the tail, each end 16-aligned.
    planner_end = align_up(arena.temp_end, ARENA_ALIGNMENT) + PLANNER_BYTES_PER_BUFFER * (
        graph.planned_tensors + requests)
    arena.need(align_up(planner_end, ARENA_ALIGNMENT))
    arena.head = arena.temp_end = 0                         # temps freed, request head released
    for channels_list in (graph.input_channels, graph.output_channels):
        arena.persistent(pointer_size * len(channels_list), tflm_tail.KERNEL_ALIGNMENT)
        for channels in channels_list:
            _persistent_tensor(arena, channels)
    return arena


@lru_cache(maxsize=1024)
def _tail_addresses(allocations: tuple) -> tuple:
    """For each residue r of the arena size mod 16, the end placed at r: the tail address
    before and after each of the (size, alignment) allocations."""
    out = []
    for residue in range(ARENA_ALIGNMENT):
        tail, addresses = residue, [residue]
        for size, alignment in allocations:
            tail = _align_down(tail - size, alignment)
            addresses.append(tail)
        out.append(tuple(addresses))
    return tuple(out)


def _residue_margins(graph: GraphAllocations, pointer_size: int) -> tuple:
    """For each residue r of the arena size mod 16, the end placed at r:
    (most bytes missing before the plan's head is reserved, the final tail address)."""
    arena = _allocate_tensors(graph, tflm_tail.struct_sizes(pointer_size), pointer_size)
    # The tail only moves down: a check is decisive only if it needs more than every later one.
    decisive, highest = [], None
    for k in sorted(arena.needs, reverse=True):
        if highest is None or arena.needs[k] > highest:
            highest = arena.needs[k]
            decisive.append((k, highest))
    out = []
    for addresses in _tail_addresses(tuple(arena.tail_allocations)):
        out.append((max(need - addresses[k] for k, need in decisive), addresses[-1]))
    return tuple(out)


def _smallest_arena(margins: tuple, head_bytes: int) -> int:
    """Every tail address moves with the end by multiples of 16 (all alignments divide 16)."""
    best = None
    for residue, (missing, final_tail) in enumerate(margins):
        short = max(0, missing, head_bytes - final_tail)
        size = residue + ARENA_ALIGNMENT * ((short + ARENA_ALIGNMENT - 1) // ARENA_ALIGNMENT)
        best = size if best is None else min(best, size)
    return best


def required_bytes(graph: GraphAllocations, head_bytes: int, pointer_size: int = 4) -> int:
    """Smallest arena (16-aligned start) for which every allocation of AllocateTensors fits,
    `head_bytes` being the planner's GetMaximumMemorySize."""
    return _smallest_arena(_residue_margins(graph, pointer_size), head_bytes)


# ---- the project's custom-op graph (tflm_ops/SPEC.md) ------------------------------------

# Temp tensors each kernel's Prepare allocates (tflm_ops/src/mcuf_*.cc through
# mcuf_op_common.cc): every ReadActivationShape/ExpectTensor one, ExpectLayerNorm two
# (the check, then the table read), a linear factor four (weights, bias, rq, then the
# rq read). Activations carry one quantization channel, constants none (tflite_writer.py).
_ACTIVATION, _CONSTANT = 1, 0
_LAYER_NORM = (_CONSTANT, _CONSTANT)


def _linear_temps(low_rank: bool) -> tuple:
    return (_CONSTANT,) * 4 * (2 if low_rank else 1)


def _low_rank_flags(config) -> tuple:
    """(qkv, proj, fc1, fc2 low-rank?) per block: with depth and pooling, all the graph's shape
    that AllocateTensors' bookkeeping depends on."""
    return tuple((config.qkv_rank[i] > 0, config.proj_rank[i] > 0, config.fc1_rank[i] > 0,
                  config.fc2_rank[i] > 0) for i in range(config.depth))


def _custom_allocations(low_rank: tuple, pool: str, stem_layers: int = 0) -> GraphAllocations:
    in_out = (_ACTIVATION, _ACTIVATION)
    opdata = tflm_tail.CUSTOM_OPDATA_BYTES
    stem = OpAllocations(opdata["MCUF_PATCH_EMBED"], in_out + _linear_temps(False), 1)     # no pos, no cls
    ops = [stem] * stem_layers
    ops.append(OpAllocations(opdata["MCUF_PATCH_EMBED"], in_out + _linear_temps(False)
                             + (_CONSTANT,) * (1 + (pool == "cls")), 1))
    for qkv, proj, fc1, fc2 in low_rank:
        ops.append(OpAllocations(opdata["MCUF_ATTENTION"],
                                 in_out + _LAYER_NORM + _linear_temps(qkv) + _linear_temps(proj), 1))
        ops.append(OpAllocations(opdata["MCUF_MLP"],
                                 in_out + _LAYER_NORM + _linear_temps(fc1) + (_CONSTANT,) + _linear_temps(fc2), 1))
    score = (_CONSTANT,) if pool == "seq" else ()           # sequence pooling's score tensor
    ops.append(OpAllocations(opdata["MCUF_HEAD"], in_out + _LAYER_NORM + _linear_temps(False) + score, 1))
    activations = len(ops) + 1
    constants = tflm_tail.custom_graph_constants(len(low_rank), sum(sum(flags) for flags in low_rank), pool,
                                                 stem_layers)
    return GraphAllocations(num_tensors=activations + constants, ops=tuple(ops), planned_tensors=activations,
                            input_channels=(1,), output_channels=(1,))


def custom_graph_allocations(config) -> GraphAllocations:
    return _custom_allocations(_low_rank_flags(config), config.pool, len(config.stem))


@lru_cache(maxsize=4096)
def _custom_margins(low_rank: tuple, pool: str, stem_layers: int, pointer_size: int) -> tuple:
    return _residue_margins(_custom_allocations(low_rank, pool, stem_layers), pointer_size)


def custom_graph_required(config, head_bytes: int, pointer_size: int = 4) -> int:
    """Required arena of the custom-op graph of `config` whose plan's head is `head_bytes`."""
    margins = _custom_margins(_low_rank_flags(config), config.pool, len(config.stem), pointer_size)
    return _smallest_arena(margins, head_bytes)
