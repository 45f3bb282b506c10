"""The one memory model: TFLM arena (head + tail), flash and MACs of a subnet.

The converter writes `custom_graph_plan(config, techniques).tensor_offsets`
into the model's `OfflineMemoryAllocation` metadata (one offset per activation
tensor in SPEC.md section 3 order, then -1 for every constant tensor):

    from .memory import Techniques, custom_graph_plan
    plan = custom_graph_plan(config)                     # all techniques on
    offsets = plan.tensor_offsets                        # [image, stem0.., tokens_0, ..., tokens_2d, logits]
    plan.head_bytes, plan.scratch_offsets, plan.tail_bytes(pointer_size=4)

The plan is what TFLM's GreedyMemoryPlanner computes for that graph with those
offline offsets (the scratch buffers are planned online around them), so the
predicted head equals TFLM's planned bytes exactly.

Two arena numbers, both exact: `plan.arena_bytes()` is TFLM's arena_used_bytes()
after AllocateTensors (head + tail); `plan.required_arena_bytes()` is the
smallest arena AllocateTensors succeeds with (tflm_required_arena.py), larger
when TFLM's planning-time bookkeeping outgrows the planned head. Arenas are
sized, and budgets checked, with the required one.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from tflm_ops import contract

from .greedy_planner import Buffer, align_up, maximum_memory_size, plan_offsets
from . import op_instructions, tflm_required_arena, tflm_tail


@dataclass(frozen=True)
class Techniques:
    """MCUFormer's scheduling techniques, each switchable.

    operator_integration: fused custom ops (attention row by row, MLP per token);
        off = the plain TFLM builtin-op graph of TFLiteConverter (then the other
        two must be off too: builtin graphs have no offline in-place plan).
    patch_decomposition: the patch embedding writes its tokens over the image (each stem layer
        its feature map too).
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


def custom_op_names(config) -> list:
    names = ["MCUF_PATCH_EMBED"] * (len(config.stem) + 1)
    for _ in range(config.depth):
        names += ["MCUF_ATTENTION", "MCUF_MLP"]
    return names + ["MCUF_HEAD"]


# MCUF_ATTENTION's (tokens_per_pass, keep_t) (SPEC 2.2), fastest first.
ATTENTION_PASSES = ((8, 1), (8, 0), (4, 1), (4, 0))
LEAN_ATTENTION = ATTENTION_PASSES[-1]


def _required_arena(config, patch_embed_passes: int, attention: tuple) -> int:
    """The converted model's required arena (all techniques on, Cortex-M) with these op variants."""
    scratch = scratch_bytes(config, patch_embed_passes, attention)
    return tflm_required_arena.custom_graph_required(config, _head_bytes(config, Techniques(), scratch))


@lru_cache(maxsize=1024)
def attention_passes(config) -> tuple:
    """MCUF_ATTENTION's (tokens_per_pass, keep_t) (SPEC 2.2) for `config`, the one choice the converter
    writes and this model plans with: the fastest of ATTENTION_PASSES whose larger scratch does not make
    the required arena larger than the leanest's (the patch embedding at 1 patch a pass)."""
    lean = _required_arena(config, 1, LEAN_ATTENTION)
    return next(p for p in ATTENTION_PASSES if _required_arena(config, 1, p) <= lean)


def attention_options(config, block: int, passes: tuple | None = None) -> dict:
    """The `tokens_per_pass` and `keep_t` options of block `block`'s attention (keep_t only with a
    low-rank qkv, where it keeps something)."""
    tokens_per_pass, keep_t = passes or attention_passes(config)
    return {"tokens_per_pass": tokens_per_pass, "keep_t": keep_t if config.qkv_rank[block] else 0}


def instruction_estimate(config) -> list:
    """op_instructions.estimate of `config` with the op variants the converter writes."""
    return op_instructions.estimate(config, {"patches_per_pass": patches_per_pass(config)},
                                    [attention_options(config, i) for i in range(config.depth)])


@lru_cache(maxsize=1024)
def patches_per_pass(config) -> int:
    """MCUF_PATCH_EMBED's `patches_per_pass` (SPEC 2.1) for `config`, the one choice the converter
    writes and this model plans with: 4 (fewer instructions) unless its larger scratch makes the
    required arena of the converted model (all techniques on, Cortex-M, the attention as
    `attention_passes` chooses) larger than with 1."""
    attention = attention_passes(config)
    required = {ppp: _required_arena(config, ppp, attention) for ppp in (1, 4)}
    return 4 if required[4] <= required[1] else 1


def scratch_bytes(config, patch_embed_passes: int | None = None, attention: tuple | None = None) -> list:
    """Bytes each custom op requests with RequestScratchBufferInArena (tflm_ops/contract.py), op order;
    the patch embedding with `patch_embed_passes` patches per pass (default: `patches_per_pass`), the
    attention with (tokens_per_pass, keep_t) `attention` (default: `attention_passes`)."""
    t, e = config.num_tokens, config.embed_dim
    attention = attention or attention_passes(config)
    passes = patch_embed_passes or patches_per_pass(config)
    sizes = [contract.scratch_bytes("MCUF_PATCH_EMBED", patch=stride, kernel=kernel, grid_w=size, embed=c_out,
                                    channels=c_in, patches_per_pass=passes)
             for kernel, stride, c_in, c_out, size in config.stem_layers()]
    sizes.append(contract.scratch_bytes("MCUF_PATCH_EMBED", patch=config.patch_size, kernel=config.kernel,
                                        grid_w=config.grid, embed=e, channels=config.stem_shapes[-1][1],
                                        patches_per_pass=passes))
    for i in range(config.depth):
        sizes.append(contract.scratch_bytes("MCUF_ATTENTION", tokens=t, embed=e, qkv_dim=config.qkv_dim[i],
                                            qkv_rank=config.qkv_rank[i], proj_rank=config.proj_rank[i],
                                            **attention_options(config, i, attention)))
        sizes.append(contract.scratch_bytes("MCUF_MLP", embed=e, hidden=config.mlp_hidden[i],
                                            fc1_rank=config.fc1_rank[i], fc2_rank=config.fc2_rank[i]))
    sizes.append(contract.scratch_bytes("MCUF_HEAD", tokens=t, embed=e, pool=contract.POOL_CODES[config.pool]))
    return sizes


def activation_names(config) -> list:
    """SPEC 3's activation order: image, stem0.., tokens_0..tokens_2d, logits."""
    return (["image"] + [f"stem{j}" for j in range(len(config.stem))]
            + [f"tokens_{k}" for k in range(2 * config.depth + 1)] + ["logits"])


def activation_bytes(config) -> list:
    tokens = config.num_tokens * config.embed_dim
    return ([size * size * channels for size, channels in config.stem_shapes]
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

    def required_arena_bytes(self, pointer_size: int = 4) -> int:
        """The smallest arena (16-aligned start) AllocateTensors and Invoke succeed with."""
        return tflm_required_arena.custom_graph_required(self.config, self.head_bytes, pointer_size)


def _activation_lifetimes(n_ops: int) -> list:
    """(first, last) scope of each activation (activation_names order): op k runs in scope k+1 and
    reads activation k; the image is the subgraph input, the logits the last op's output."""
    return [(k, k + 1) for k in range(n_ops)] + [(n_ops, n_ops)]


def _shared_groups(stem_layers: int, depth: int, techniques: Techniques) -> list:
    """Group id of each activation tensor; tensors of one group share one offset."""
    groups = [0]
    for _ in range(stem_layers + 1):                       # stem outputs, then tokens_0
        groups.append(0 if techniques.patch_decomposition else groups[-1] + 1)
    next_id = groups[-1] + 1
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
    lifetimes = _activation_lifetimes(len(sizes) - 1)
    groups = _shared_groups(len(config.stem), config.depth, techniques)
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


# ---- the fast path used by search: same plan, no Buffer objects ---------------------

def _first_fit(size: int, placed: list) -> int:
    """TFLM's gap search for one online buffer among `placed` (offset, size) live with it."""
    candidate = 0
    for offset, other in sorted(placed):
        if offset - candidate >= size:
            break
        candidate = max(candidate, offset + other)
    return candidate


def head_bytes(config, techniques: Techniques = Techniques()) -> int:
    """`custom_graph_plan(config, techniques).head_bytes`, computed ~20x faster.

    Scratch buffers live only during their op and never overlap each other in
    time, so TFLM places each one by first fit among the offline tensors live
    in that scope; tests check equality with the full planner.
    """
    return _head_bytes(config, techniques, scratch_bytes(config))


def _head_bytes(config, techniques: Techniques, scratch: list) -> int:
    sizes = [align_up(size) for size in activation_bytes(config)]
    offsets = _group_offsets(config, techniques, sizes)
    n_ops = len(sizes) - 1
    peak = max(offset + size for offset, size in zip(offsets, sizes))
    for op in range(n_ops):
        # live in scope op + 1: its input (activation op) and its output (op + 1)
        live = [(offsets[k], sizes[k]) for k in (op, op + 1)]
        size = align_up(scratch[op])
        peak = max(peak, _first_fit(size, live) + size)
    return peak


def _group_offsets(config, techniques, sizes: list) -> list:
    """Offsets of every activation (aligned `sizes`) from the greedy plan of the shared groups."""
    n = len(sizes)
    if techniques.patch_decomposition and techniques.token_overwrite:
        # Two online groups, {image, stem*, tokens_*} over every scope and logits in the last:
        # the greedy planner puts the larger at 0 (logits first on a tie) and the other after it.
        shared, logits = max(sizes[:-1]), sizes[-1]
        shared_at, logits_at = (0, shared) if logits < shared else (logits, 0)
        return [shared_at] * (n - 1) + [logits_at]
    lifetimes = _activation_lifetimes(n - 1)
    groups = _shared_groups(len(config.stem), config.depth, techniques)
    g_n = groups[-1] + 1
    size, first, last = [0] * g_n, [1 << 30] * g_n, [-1] * g_n
    for g, s, (f, l) in zip(groups, sizes, lifetimes):
        size[g], first[g], last[g] = max(size[g], s), min(first[g], f), max(last[g], l)
    offsets = plan_offsets([Buffer(size[g], first[g], last[g]) for g in range(g_n)])
    return [offsets[g] for g in groups]


# ---- flash -------------------------------------------------------------------------------

# TFLM + CMSIS-NN + the custom kernels + the example app on the STM32F746 build
# (.text + .data with --gc-sections, minus the model array and test images): the same
# 65,896 B for two different models (with the model CRC-32 check; the token-batched kernels and
# sequence pooling added 3,696 B to the earlier 55,832 B, the faster attention kernels and the
# patch embedding's four patches per pass 1,968 B to 59,528 B, its one-patch path beside them
# 992 B, the attention's 8-token passes, keep_t and the packed LayerNorm 3,008 B to 62,488 B,
# the patch embedding's has_pos and relu options of version 4 400 B to 65,896 B),
# measured with benchmarks/probe/measure_code_flash.py
# (arm-none-eabi-gcc 12.2, TFLM 90b983c). Custom ops only; a builtin-op build is larger.
CODE_FLASH_BYTES = 65_896

# Flatbuffer overhead of the converter's writer (converter/tflite_writer.py) beyond the
# 16-aligned constant data: per constant tensor, per op (with its output activation
# tensor, options and offline-plan entry), per stem layer (its op and its 3 constants:
# no position embedding) and per model. Fitted by least squares on 12 written models, 3 with
# stem layers, with `benchmarks/probe/fit_flash.py` (residuals <= 44 B, under 0.2%, at
# MCUF_PATCH_EMBED version 4); tests/test_memory_measured.py re-checks freshly written models.
FB_PER_CONSTANT = 90
FB_PER_OP = 354
FB_PER_STEM_LAYER = 502
FB_FIXED = 494
FB_BUFFER_ALIGNMENT = 16


def constant_tensors(config) -> list:
    """(bytes, quantization channels) of every constant tensor of the custom-op graph,
    in SPEC order: int8 weights, int32 biases, int32 [n, 2] requant tables, int32 [E, 3]
    LayerNorm tables, int8 position embedding, class token and GELU LUTs."""
    e = config.embed_dim

    def linear(n_in, n_out, rank):
        if rank == 0:
            return [(n_out * n_in, n_out), (4 * n_out, 0), (8 * n_out, 0)]
        return [(rank * n_in, rank), (4 * rank, 0), (8 * rank, 0),
                (n_out * rank, n_out), (4 * n_out, 0), (8 * n_out, 0)]

    out = [t for k, _, c_in, c, _ in config.stem_layers() for t in ((c * k * k * c_in, c), (4 * c, 0), (8 * c, 0))]
    out += [(e * config.patch_dim, e), (4 * e, 0), (8 * e, 0), (config.num_tokens * e, 0)]
    if config.pool == "cls":
        out.append((e, 0))
    for i in range(config.depth):
        out.append((12 * e, 0))
        out += linear(*config.linear_shape(i, "qkv"), config.qkv_rank[i])
        out += linear(*config.linear_shape(i, "proj"), config.proj_rank[i])
        out.append((12 * e, 0))
        out += linear(*config.linear_shape(i, "fc1"), config.fc1_rank[i])
        out.append((256, 0))
        out += linear(*config.linear_shape(i, "fc2"), config.fc2_rank[i])
    out.append((12 * e, 0))
    return out + linear(e, config.num_classes, 0) + ([(e, 0)] if config.pool == "seq" else [])


def _align_fb(n: int) -> int:
    return (n + FB_BUFFER_ALIGNMENT - 1) // FB_BUFFER_ALIGNMENT * FB_BUFFER_ALIGNMENT


@lru_cache(maxsize=4096)
def _linear_flash(n_in: int, n_out: int, rank: int) -> tuple:
    """(aligned data bytes, tensor count) of one linear layer."""
    if rank == 0:
        return _align_fb(n_out * n_in) + _align_fb(4 * n_out) + _align_fb(8 * n_out), 3
    data = sum(_align_fb(b) for b in (rank * n_in, 4 * rank, 8 * rank, n_out * rank, 4 * n_out, 8 * n_out))
    return data, 6


def model_flash_bytes(config) -> int:
    """Size of the converter's model.tflite for `config` (custom-op graph); the same
    sum as over `constant_tensors`, by layer for speed."""
    e = config.embed_dim
    ln = _align_fb(12 * e)
    data = (_align_fb(e * config.patch_dim) + _align_fb(4 * e) + _align_fb(8 * e)
            + _align_fb(config.num_tokens * e) + ln)
    count = 5
    data += FB_PER_STEM_LAYER * len(config.stem)
    for k, _, c_in, c, _ in config.stem_layers():
        data += _align_fb(c * k * k * c_in) + _align_fb(4 * c) + _align_fb(8 * c)
    if config.pool == "cls":
        data, count = data + _align_fb(e), count + 1
    head = _linear_flash(e, config.num_classes, 0)
    data, count = data + head[0], count + head[1]
    if config.pool == "seq":                           # the score vector, int8 [E]
        data, count = data + _align_fb(e), count + 1
    for i in range(config.depth):
        q, m = config.qkv_dim[i], config.mlp_hidden[i]
        data += 2 * ln + 256
        count += 3
        for shape in ((e, 3 * q, config.qkv_rank[i]), (q, e, config.proj_rank[i]),
                      (e, m, config.fc1_rank[i]), (m, e, config.fc2_rank[i])):
            d, n = _linear_flash(*shape)
            data, count = data + d, count + n
    return data + FB_PER_CONSTANT * count + FB_PER_OP * (2 * config.depth + 2) + FB_FIXED


# ---- compute ---------------------------------------------------------------------------

def latency_proxy(config, macs: int | None = None) -> float:
    """Relative latency: MACs plus the per-element work of LayerNorm, softmax, GELU and
    requantization (one MAC-equivalent each). Compare subnets with it, never as time."""
    t, e = config.num_tokens, config.embed_dim
    elementwise = t * e * (2 * config.depth + 1) * 2                          # LN in, residual out
    for i in range(config.depth):
        elementwise += config.num_heads[i] * t * t + t * config.mlp_hidden[i]   # softmax rows, GELU
    return float((config.macs() if macs is None else macs) + elementwise)


# ---- everything search needs, per subnet --------------------------------------------------

def required_arena_bytes(config, techniques: Techniques = Techniques(), pointer_size: int = 4) -> int:
    """The smallest TFLM arena the deployed subnet runs with (4 = Cortex-M, 8 = x86_64 host).

    Builtin-op graphs (techniques off): arena_used_bytes (head + tail) only, a lower
    bound, since the builtin kernels' Prepare-time allocations are not modelled.
    """
    return evaluate(config, techniques, pointer_size).sram


@dataclass(frozen=True)
class Cost:
    sram: int            # the arena the deployed subnet needs: required_arena_bytes (32-bit Cortex-M build)
    flash: int           # model flatbuffer + code
    macs: int
    latency: float
    head: int
    tail: int
    model_bytes: int
    arena_used: int      # TFLM's arena_used_bytes() after AllocateTensors: head + tail
    instructions: int | None = None   # ESTIMATE (op_instructions.py) of Invoke's instructions; custom ops only

    def to_dict(self) -> dict:
        return {"sram": self.sram, "flash": self.flash, "macs": self.macs, "latency_proxy": self.latency,
                "arena_head": self.head, "arena_tail": self.tail, "arena_used": self.arena_used,
                "model_bytes": self.model_bytes, "instructions_estimate": self.instructions}


def evaluate(config, techniques: Techniques = Techniques(), pointer_size: int = 4) -> Cost:
    """SRAM, flash, MACs, latency proxy and instruction estimate of a subnet deployed by this project."""
    instructions = None
    if techniques.operator_integration:
        head = head_bytes(config, techniques)
        tail = tflm_tail.custom_graph_tail(config, pointer_size)
        required = tflm_required_arena.custom_graph_required(config, head, pointer_size)
        estimates = instruction_estimate(config)
        instructions = None if None in estimates else sum(estimates)
    else:
        from .builtin_graph import builtin_arena
        head, tail = builtin_arena(config, pointer_size)
        required = head + tail
    model = model_flash_bytes(config)
    macs = config.macs()
    return Cost(sram=required, flash=model + CODE_FLASH_BYTES, macs=macs, latency=latency_proxy(config, macs),
                head=head, tail=tail, model_bytes=model, arena_used=head + tail, instructions=instructions)
