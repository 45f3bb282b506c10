"""TFLM's persistent (tail) arena allocations, from micro_allocator.cc and
micro_interpreter.cc at TFLM 90b983c, for a 32-bit (Cortex-M, pointer 4) or a
64-bit (x86_64 host, pointer 8) build with TF_LITE_STATIC_MEMORY.

The tail grows down from the (16-aligned) arena end; every allocation is
aligned down to its alignment, so padding is modelled exactly by `Tail`.
"""
from __future__ import annotations

from functools import lru_cache

from tflm_ops import contract

from .tflm_structs import STRUCTS

KERNEL_ALIGNMENT = 16     # MicroAllocator::AllocatePersistentBuffer uses MicroArenaBufferAlignment()


def struct_sizes(pointer_size: int) -> dict:
    """sizeof/alignof of the TFLM structs the tail holds: {name: (size, align)}."""
    if pointer_size not in STRUCTS:
        raise ValueError(f"pointer size must be 4 or 8, got {pointer_size}")
    sizes = dict(STRUCTS[pointer_size])
    sizes["MicroBuiltinDataAllocator"] = (2 * pointer_size, pointer_size)   # vptr + allocator pointer
    return sizes


# The tflite-micro wheel's allocator objects are 32 B larger than the pinned
# TFLM's Recording* classes (measured on single-op models, see builtin_kernels).
WHEEL_ALLOCATOR_EXTRA = 32


class Tail:
    """Simulates PersistentArenaBufferAllocator: allocations from a 16-aligned end downward."""

    def __init__(self, pointer_size: int, recording: bool = False):
        """`recording`: the RecordingMicroAllocator the tflite-micro wheel's interpreter uses."""
        self.sizes = struct_sizes(pointer_size)
        self.pointer_size = pointer_size
        self.recording = recording
        self.used = WHEEL_ALLOCATOR_EXTRA if recording else 0

    def allocate(self, size: int, alignment: int) -> None:
        self.used = (self.used + size + alignment - 1) // alignment * alignment

    def allocate_struct(self, name: str, count: int = 1) -> None:
        size, align = self.sizes[name]
        self.allocate(size * count, align)

    def interpreter_start(self, num_tensors: int, num_ops: int) -> None:
        """MicroAllocator::Create + StartModelAllocation (one subgraph)."""
        prefix = "Recording" if self.recording else ""
        for name in (prefix + "SingleArenaBufferAllocator", "GreedyMemoryPlanner", prefix + "MicroAllocator",
                     "MicroBuiltinDataAllocator", "SubgraphAllocations"):
            self.allocate_struct(name)
        self.allocate_struct("TfLiteEvalTensor", num_tensors)
        self.allocate_struct("NodeAndRegistration", num_ops)

    def kernel_buffer(self, size: int) -> None:
        """A kernel's context->AllocatePersistentBuffer (OpData from Init/Prepare)."""
        if size:
            self.allocate(size, KERNEL_ALIGNMENT)

    def builtin_data(self, params_struct: str) -> None:
        """Parsed builtin options (MicroBuiltinDataAllocator, alignof the params struct)."""
        self.allocate_struct(params_struct)

    def interpreter_finish(self, num_scratch: int, input_channels: list, output_channels: list) -> None:
        """FinishModelAllocation's scratch handles and AllocateTensors' input/output TfLiteTensors.

        `*_channels`: number of quantization scales of each input/output tensor.
        """
        if num_scratch:
            self.allocate_struct("ScratchBufferHandle", num_scratch)
        for channels_list in (input_channels, output_channels):
            self.allocate(self.pointer_size * len(channels_list), KERNEL_ALIGNMENT)
            for channels in channels_list:
                self.allocate_struct("TfLiteTensor")
                if channels:
                    self.allocate_struct("TfLiteAffineQuantization")
                    self.allocate(4 + 4 * channels, 4)          # zero_point TfLiteIntArray


# Persistent bytes each custom kernel allocates in Init (its OpData), from the op contract.
CUSTOM_OPDATA_BYTES = contract.OPDATA_BYTES


def _low_rank_linears(config) -> int:
    return sum(1 for i in range(config.depth) for r in (config.qkv_rank[i], config.proj_rank[i],
                                                          config.fc1_rank[i], config.fc2_rank[i]) if r)


def custom_graph_constants(depth: int, low_rank_linears: int, pool: str, stem_layers: int = 0) -> int:
    """Constant tensors of the custom-op graph (memory.constant_tensors, counted)."""
    return (3 * stem_layers + 4 + (pool in ("cls", "seq")) + depth * (1 + 1 + 1 + 4 * 3)
            + 3 * low_rank_linears + 4)


def custom_graph_tail(config, pointer_size: int = 4) -> int:
    return _custom_tail(config.depth, _low_rank_linears(config), config.pool, len(config.stem), pointer_size)


@lru_cache(maxsize=1024)
def _custom_tail(depth: int, low_rank_linears: int, pool: str, stem_layers: int, pointer_size: int) -> int:
    """The tail depends only on tensor and op counts: cached by them."""
    num_ops = stem_layers + 2 * depth + 2
    num_tensors = (num_ops + 1) + custom_graph_constants(depth, low_rank_linears, pool, stem_layers)
    tail = Tail(pointer_size)
    tail.interpreter_start(num_tensors, num_ops)
    ops = ["MCUF_PATCH_EMBED"] * (stem_layers + 1) + ["MCUF_ATTENTION", "MCUF_MLP"] * depth + ["MCUF_HEAD"]
    for op in ops:
        tail.kernel_buffer(CUSTOM_OPDATA_BYTES[op])
    tail.interpreter_finish(num_ops, input_channels=[1], output_channels=[1])
    return tail.used
