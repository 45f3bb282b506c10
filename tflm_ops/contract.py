"""The MCUFormer op contract (SPEC.md section 2) as plain Python data: the one source.

Option names, order and ranges, the requant-row rule, the tensor lists, the
scratch segments, the OpData sizes and the int8 input rule are written here
once. The converter writes options with it, the numpy reference and the
Prepare mirror (`validity.py`) check them with it, the memory model sizes
scratch and OpData with it, and the kernel tests use it. The C kernels (src/)
spell the same contract in their `kSpecs` tables, OpData structs and
`ScratchOf` functions; tests/test_contract_c_tables.py parses them and fails
when they disagree with this file.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

VERSION = 1                        # OperatorCode.version and the "version" option (SPEC 4) of the ops
# not listed in VERSIONS; MCUF_PATCH_EMBED 2 added option `kernel` (the convolutional tokenizer), 3 option
# `patches_per_pass`, 4 options `has_pos` and `relu` (a layer of a convolutional stem);
# MCUF_ATTENTION 2 options `tokens_per_pass` and `keep_t`;
# MCUF_HEAD 2 sequence pooling (pool 2: options sm_mult, sm_shift and the `score` tensor).
INT32_MAX = (1 << 31) - 1
MAX_SIZE = 65535                   # every size: T, E, P*P*C, heads, dims, ranks
MAX_PATCH = 4096
LN_EPS_MAX = 1 << 40
ZERO_POINT_RANGE = (-128, 127)

# A (multiplier, shift) pair and every rq / ln row: m == 0 or |m| in [2^30, 2^31), shift in [-31, 30].
MULTIPLIER_MAGNITUDE = (1 << 30, 1 << 31)      # [low, high)
SHIFT_RANGE = (-31, 30)
MULTIPLIER_RULE = "|m| in [2^30, 2^31) or 0, shift in [-31, 30]"

# The model input (SPEC 0): the image as int8, scale 1/255, zero point -128 (pixel - 128).
INPUT_SCALE = 1.0 / 255.0
INPUT_ZERO_POINT = -128


class Option(NamedTuple):
    """One integer option of an op's FlexBuffer map and its accepted range [min, max]."""
    name: str
    min: int
    max: int


def _zero_point(name: str) -> Option:
    return Option(name, *ZERO_POINT_RANGE)


def _multiplier(prefix: str) -> tuple:
    return Option(f"{prefix}_mult", -INT32_MAX, INT32_MAX), Option(f"{prefix}_shift", *SHIFT_RANGE)


_VERSION = Option("version", VERSION, VERSION)
VERSIONS = {"MCUF_PATCH_EMBED": 4, "MCUF_ATTENTION": 2, "MCUF_MLP": VERSION, "MCUF_HEAD": 2}
_LN = (Option("ln_eps", 0, LN_EPS_MAX), _zero_point("ln_zp"))
_SOFTMAX = (Option("sm_mult", 1 << 30, INT32_MAX), Option("sm_shift", 1, 62))   # SPEC 1.3's (M, S)
# MCUF_HEAD `pool` values (SPEC 2.4).
POOL_MEAN, POOL_CLS, POOL_SEQ = 0, 1, 2
POOL_CODES = {"mean": POOL_MEAN, "cls": POOL_CLS, "seq": POOL_SEQ}

# Options of each op, in the order of the C kSpecs tables (SPEC 2.1-2.4).
OPTIONS = {
    "MCUF_PATCH_EMBED": (Option("version", 4, 4), Option("patch", 1, MAX_PATCH), Option("kernel", 1, MAX_PATCH),
                         Option("has_cls", 0, 1), Option("patches_per_pass", 1, 4), Option("has_pos", 0, 1),
                         Option("relu", 0, 1), _zero_point("pos_zp"),
                         *_multiplier("pos")),
    "MCUF_ATTENTION": (Option("version", 2, 2), Option("heads", 1, MAX_SIZE), Option("qkv_dim", 1, MAX_SIZE),
                       Option("qkv_rank", 0, MAX_SIZE), Option("proj_rank", 0, MAX_SIZE),
                       Option("tokens_per_pass", 4, 8), Option("keep_t", 0, 1), *_LN,
                       _zero_point("qkv_t_zp"), _zero_point("proj_t_zp"),
                       *_SOFTMAX, *_multiplier("ctx"), *_multiplier("res")),
    "MCUF_MLP": (_VERSION, Option("hidden", 1, MAX_SIZE), Option("fc1_rank", 0, MAX_SIZE),
                 Option("fc2_rank", 0, MAX_SIZE), *_LN, _zero_point("fc1_t_zp"), _zero_point("fc2_t_zp"),
                 _zero_point("fc1_zp"), _zero_point("gelu_zp"), *_multiplier("res")),
    "MCUF_HEAD": (Option("version", 2, 2), Option("pool", POOL_MEAN, POOL_SEQ), *_LN, _zero_point("pool_zp"),
                  *_multiplier("pool"), *_SOFTMAX),
}
OPS = tuple(OPTIONS)

# Option pairs PREFIX_mult / PREFIX_shift that must be a valid multiplier (Prepare checks them all).
MULTIPLIER_PAIRS = {"MCUF_PATCH_EMBED": ("pos",), "MCUF_ATTENTION": ("ctx", "res"), "MCUF_MLP": ("res",),
                    "MCUF_HEAD": ("pool",)}
# (option, divisor option): the first must be a multiple of the second.
DIVISIBLE = {"MCUF_ATTENTION": (("qkv_dim", "heads"),)}
# (option, bound option): the first must be at least the second (the tokenizer window covers its stride).
AT_LEAST = {"MCUF_PATCH_EMBED": (("kernel", "patch"),)}
# Options whose only accepted values are these (within their range).
CHOICES = {"MCUF_PATCH_EMBED": {"patches_per_pass": (1, 4)}, "MCUF_ATTENTION": {"tokens_per_pass": (4, 8)}}

# Persistent bytes of each kernel's OpData (SPEC 2.5), the same on 32- and 64-bit targets.
OPDATA_BYTES = {"MCUF_PATCH_EMBED": 80, "MCUF_ATTENTION": 96, "MCUF_MLP": 88, "MCUF_HEAD": 64}

# ---- tensors (SPEC 1.1, 2) ----------------------------------------------------------------

# Type of each named constant input; a linear layer is weights, bias, rq (full rank) or
# those of its factor V then of U (low rank).
TENSOR_TYPES = {"weights": "int8", "bias": "int32", "rq": "int32", "ln": "int32", "pos": "int8",
                "cls": "int8", "gelu_lut": "int8", "score": "int8"}
LINEAR_FACTOR = ("weights", "bias", "rq")
# Linear layers of each op in input order, with the option holding their rank (None: always full).
LINEARS = {"MCUF_PATCH_EMBED": (("patch", None),), "MCUF_ATTENTION": (("qkv", "qkv_rank"), ("proj", "proj_rank")),
           "MCUF_MLP": (("fc1", "fc1_rank"), ("fc2", "fc2_rank")), "MCUF_HEAD": (("fc", None),)}
GELU_LUT_SIZE = 256


def linear_tensor_count(rank: int) -> int:
    return 6 if rank else 3


# Inputs besides the linear layers: image (+ pos, + cls); x and ln (+ gelu_lut; + score for pool seq).
_OTHER_INPUTS = {"MCUF_PATCH_EMBED": 1, "MCUF_ATTENTION": 2, "MCUF_MLP": 3, "MCUF_HEAD": 2}


def input_count(code: str, options) -> int:
    """Number of input tensors of an op with these (valid) options."""
    linears = sum(linear_tensor_count(int(options[rank]) if rank else 0) for _, rank in LINEARS[code])
    optional = int(options["has_pos"]) + int(options["has_cls"]) if code == "MCUF_PATCH_EMBED" else 0
    has_score = int(code == "MCUF_HEAD" and int(options["pool"]) == POOL_SEQ)
    return linears + _OTHER_INPUTS[code] + optional + has_score


# ---- scratch (SPEC 0 and 2) ---------------------------------------------------------------

def patch_embed_pad(patch: int, kernel: int) -> int:
    """Zero-point rows/columns before the first window (SPEC 2.1); the rest of kernel - patch come after."""
    return (kernel - patch) // 2


def patch_embed_top_down(*, patch, embed, channels) -> bool:
    """Strip order (SPEC 2.1): top to bottom when a token row is no larger than its patch rows."""
    return embed <= patch * patch * channels


def patch_embed_halo_rows(*, patch, kernel, embed, channels) -> int:
    """Input rows kept in scratch: the top padding going down, the bottom padding going up (SPEC 2.1)."""
    pad = patch_embed_pad(patch, kernel)
    return pad if patch_embed_top_down(patch=patch, embed=embed, channels=channels) else kernel - patch - pad


TOKEN_BATCH = 4        # tokens (patches) per pass of the ops' linears (kTokenBatch in C)
MAX_TOKEN_BATCH = 8    # MCUF_ATTENTION's tokens_per_pass may take this many (kMaxTokenBatch in C)
PATCH_CHUNK = 256      # window columns the patch embedding gathers and packs per pass (kPatchChunk in C)


def packed_bytes(values: int, tokens: int = TOKEN_BATCH) -> int:
    """int16 copies of `tokens` tokens of `values` int8 each, padded to groups of 4 (SPEC 0)."""
    return 2 * tokens * ((values + 3) // 4 * 4)


def patch_embed_scratch(*, patch, kernel, grid_w, embed, channels, patches_per_pass, **_) -> list:
    """4 patches a pass: int32 accumulators of 4 patches and PATCH_CHUNK window columns of them, gathered
    and packed; 1: only the whole window, gathered (no accumulators, no packed copy)."""
    halo = patch_embed_halo_rows(patch=patch, kernel=kernel, embed=embed, channels=channels)
    window = kernel * kernel * channels
    packed = 0 if patches_per_pass == 1 else patches_per_pass
    chunk = window if packed == 0 else min(window, PATCH_CHUNK)
    return [("strip", grid_w * embed), ("halo", halo * grid_w * patch * channels),
            ("acc", 4 * packed * embed), ("chunk", chunk), ("packed", packed_bytes(chunk, packed))]


def attention_scratch(*, tokens, embed, qkv_dim, qkv_rank, proj_rank, tokens_per_pass, keep_t, **_) -> list:
    """tokens_per_pass tokens per pass of the linears and scores; keep_t: the qkv intermediate t of every
    token, kept from the K/V pass (low-rank qkv only)."""
    kv, nb = tokens * qkv_dim, tokens_per_pass
    return [("k", kv), ("v", kv), ("t_kept", tokens * qkv_rank if keep_t else 0),
            ("h_packed", packed_bytes(embed, nb)),
            ("t_packed", packed_bytes(max(qkv_rank, proj_rank), nb)), ("q", nb * qkv_dim),
            ("q_packed", packed_bytes(qkv_dim, nb)), ("ctx_packed", packed_bytes(qkv_dim, nb)),
            ("a", 4 * nb * tokens), ("p_packed", packed_bytes(tokens, nb))]


def mlp_scratch(*, embed, hidden, fc1_rank, fc2_rank, **_) -> list:
    return [("h", embed), ("h_packed", packed_bytes(embed)), ("t_packed", packed_bytes(max(fc1_rank, fc2_rank))),
            ("g_packed", packed_bytes(hidden))]


def head_scratch(*, embed, tokens, pool, **_) -> list:
    return [("h", embed), ("sum", 4 * embed), ("pooled", embed), ("a", 4 * tokens if pool == POOL_SEQ else 0)]


# Each op's one scratch buffer as (segment, bytes) in order, from its options and dims (`op_dims`).
SCRATCH = {"MCUF_PATCH_EMBED": patch_embed_scratch, "MCUF_ATTENTION": attention_scratch,
           "MCUF_MLP": mlp_scratch, "MCUF_HEAD": head_scratch}


def layout_bytes(sizes) -> int:
    """End of the last segment laid out in order at ALIGN4 offsets; a size-0 segment takes no space."""
    end = 0
    for size in sizes:
        if size:
            end = (end + 3) // 4 * 4 + size
    return end


def scratch_bytes(code: str, **options_and_dims) -> int:
    """Bytes the op requests with RequestScratchBufferInArena."""
    return layout_bytes(size for _, size in SCRATCH[code](**options_and_dims))


def op_dims(code: str, options, input_shape, output_shape) -> dict:
    """The dims the scratch segments use, from the op's activation shapes (with their leading 1)."""
    if code == "MCUF_PATCH_EMBED":
        _, _, width, channels = input_shape
        patch = int(options["patch"])
        return {"grid_w": width // patch, "embed": output_shape[-1], "channels": channels}
    return {"tokens": input_shape[1], "embed": input_shape[2]}


# ---- validity of the options --------------------------------------------------------------

def valid_multiplier(m, shift):
    """The requant-row rule, elementwise on arrays (or two ints)."""
    m, shift = np.asarray(m, np.int64), np.asarray(shift, np.int64)
    magnitude = np.abs(m)
    low, high = MULTIPLIER_MAGNITUDE
    ok = ((m == 0) | ((magnitude >= low) & (magnitude < high))) & (shift >= SHIFT_RANGE[0]) & (shift <= SHIFT_RANGE[1])
    return bool(ok) if ok.ndim == 0 else ok


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def options_error(code: str, options) -> str | None:
    """Why the kernel's Prepare rejects these options (the first reason, naming the field), or None."""
    if not isinstance(options, Mapping):
        return "custom options are not a valid FlexBuffer map"
    for spec in OPTIONS[code]:
        value = options.get(spec.name)
        if value is None:
            return f"option '{spec.name}' is missing"
        if not _is_int(value):
            return f"option '{spec.name}' is not an integer ({value!r})"
        if spec.name == "version" and value != VERSIONS[code]:
            return f"option 'version' is {value}; the kernels implement version {VERSIONS[code]}"
        if not spec.min <= value <= spec.max:
            return f"option '{spec.name}' is {value}, outside [{spec.min}, {spec.max}]"
    for prefix in MULTIPLIER_PAIRS[code]:
        m, s = int(options[f"{prefix}_mult"]), int(options[f"{prefix}_shift"])
        if not valid_multiplier(m, s):
            return f"options '{prefix}_mult', '{prefix}_shift' ({m}, {s}) are not a valid multiplier ({MULTIPLIER_RULE})"
    for name, divisor in DIVISIBLE.get(code, ()):
        if int(options[name]) % int(options[divisor]):
            return f"option '{name}' ({options[name]}) is not a multiple of '{divisor}' ({options[divisor]})"
    for name, values in CHOICES.get(code, {}).items():
        if int(options[name]) not in values:
            return f"option '{name}' is {options[name]}; the kernel implements {' or '.join(map(str, values))}"
    for name, bound in AT_LEAST.get(code, ()):
        if int(options[name]) < int(options[bound]):
            return f"option '{name}' ({options[name]}) is smaller than '{bound}' ({options[bound]})"
    return None


def in_range(code: str, name: str, value: int) -> bool:
    spec = next(spec for spec in OPTIONS[code] if spec.name == name)
    return spec.min <= value <= spec.max


def check_options(code: str, options) -> dict:
    """The options, or ValueError naming the op and field when Prepare would reject them."""
    if code not in OPTIONS:
        raise ValueError(f"unknown op {code!r} (the ops are {', '.join(OPS)})")
    error = options_error(code, options)
    if error:
        raise ValueError(f"{code}: {error}")
    return options


def make_options(code: str, **values) -> dict:
    """The FlexBuffer options map of an op in spec order; every option but version must be given."""
    names = [spec.name for spec in OPTIONS[code]]
    given = {"version": VERSIONS[code], **values}
    if sorted(given) != sorted(names):
        raise ValueError(f"{code} options: missing {sorted(set(names) - set(given))}, "
                         f"unknown {sorted(set(given) - set(names))}")
    return {name: int(given[name]) for name in names}


# ---- the model input ----------------------------------------------------------------------

def quantize_input(pixels) -> np.ndarray:
    """Pixels in [0, 255] (any numeric type) -> the int8 model input: round, clip, add the zero point."""
    values = np.clip(np.round(np.asarray(pixels, np.float64)), 0, 255)
    return (values + INPUT_ZERO_POINT).astype(np.int8)
