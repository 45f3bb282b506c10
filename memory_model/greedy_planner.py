"""TFLM's GreedyMemoryPlanner and its allocation-lifetime rules, ported exactly.

Source: tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc,
micro_allocation_info.cc and micro_allocator.cc (CreatePlan) at TFLM 90b983c.
Every buffer size is rounded up to `ARENA_ALIGNMENT` before planning, as
`CreatePlan` does; offline-planned buffers keep their fixed offsets and the
online ones (e.g. scratch buffers) are fitted around them in TFLM's order.
"""
from __future__ import annotations

from dataclasses import dataclass

ARENA_ALIGNMENT = 16          # MicroArenaBufferAlignment()
ONLINE = -1                   # kOnlinePlannedBuffer


def align_up(size: int, alignment: int = ARENA_ALIGNMENT) -> int:
    return (size + alignment - 1) // alignment * alignment


@dataclass(frozen=True)
class Buffer:
    """One planned buffer: `size` bytes (already aligned), live in scopes first..last."""
    size: int
    first: int
    last: int
    offline_offset: int = ONLINE
    name: str = ""


def plan_offsets(buffers: list) -> list:
    """Offsets GreedyMemoryPlanner::CalculateOffsetsIfNeeded assigns, in `buffers` order."""
    count = len(buffers)
    if count == 0:
        return []
    # Offline buffers first in their own order; online ones filled from the
    # tail (so in reverse order) and then bubble-sorted by descending size.
    order = [0] * count
    head, tail = 0, count
    offsets = [ONLINE] * count
    for i, b in enumerate(buffers):
        if b.offline_offset == ONLINE:
            tail -= 1
            order[tail] = i
        else:
            order[head] = i
            offsets[i] = b.offline_offset
            head += 1
    online = order[head:]
    _reverse_sort_in_place(online, [buffers[i].size for i in online])
    order[head:] = online

    # `placed` is the offset-ordered list of (offset, buffer index), with
    # equal offsets kept in insertion order (TFLM inserts after equal ones).
    first_id = order[0]
    if buffers[first_id].offline_offset == ONLINE:
        offsets[first_id] = 0
    placed = [(offsets[first_id], first_id)]
    for buffer_id in order[1:]:
        wanted = buffers[buffer_id]
        if wanted.offline_offset == ONLINE:
            candidate = 0
            for offset, other_id in placed:
                other = buffers[other_id]
                if other.first > wanted.last or wanted.first > other.last:
                    continue
                if offset - candidate >= wanted.size:
                    break
                candidate = max(candidate, offset + other.size)
        else:
            candidate = wanted.offline_offset
        offsets[buffer_id] = candidate
        if placed[0][0] > candidate:
            placed.insert(0, (candidate, buffer_id))
        else:
            at = len(placed)
            for k in range(1, len(placed)):
                if placed[k][0] > candidate:
                    at = k
                    break
            placed.insert(at, (candidate, buffer_id))
    return offsets


def _reverse_sort_in_place(ids: list, values: list) -> None:
    """TFLM's ReverseSortInPlace: a stable bubble sort into descending order."""
    swapped = True
    while swapped:
        swapped = False
        for i in range(1, len(values)):
            if values[i - 1] < values[i]:
                values[i - 1], values[i] = values[i], values[i - 1]
                ids[i - 1], ids[i] = ids[i], ids[i - 1]
                swapped = True


def maximum_memory_size(buffers: list, offsets: list) -> int:
    """GetMaximumMemorySize: the planned (head) bytes."""
    return max((o + b.size for o, b in zip(offsets, buffers)), default=0)


def any_overlap(buffers: list, offsets: list) -> bool:
    """DoAnyBuffersOverlap: two buffers live at once sharing bytes."""
    for i, a in enumerate(buffers):
        for j, b in enumerate(buffers):
            if i == j or a.first > b.last or b.first > a.last:
                continue
            if offsets[i] >= offsets[j] + b.size or offsets[j] >= offsets[i] + a.size:
                continue
            return True
    return False


def tensor_lifetimes(num_tensors: int, inputs, outputs, operators) -> list:
    """(first, last) allocation scope of each tensor, as MarkAllocationLifetimes
    computes them for one subgraph without control flow; (-1, -1) = unused.

    `operators` is a list of (input tensor ids, output tensor ids).
    """
    first = [-1] * num_tensors
    last = [-1] * num_tensors
    scope = 0
    for t in inputs:
        if first[t] == -1:
            first[t] = scope
        last[t] = scope
    for op_inputs, op_outputs in operators:
        scope += 1
        for t in op_outputs:
            if first[t] == -1:
                first[t] = scope
        for t in op_inputs:
            if t >= 0:
                last[t] = scope
        for t in op_outputs:
            last[t] = scope
    for t in outputs:
        if first[t] == -1:
            first[t] = scope
        last[t] = scope
    return list(zip(first, last))
