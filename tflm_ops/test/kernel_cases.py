"""Kernel test cases for tflm_ops/test/kernel_test.cc: random SPEC-valid ops, files, results.

Case file (little-endian): b"MCUFKT01", u32 count, then per case
    u32 op (0 patch embed, 1 attention, 2 mlp, 3 head), u32 flags (1 = in place:
    the output shares the first input's buffer; 2 = the output starts one byte
    into it), u32 n_inputs, u32 options_len,
    options (FlexBuffer bytes), then n_inputs + 1 tensors (inputs in SPEC order,
    then the output with no data): i32 TfLiteType, i32 ndims, i32 dims[ndims],
    i32 zero_point, f32 scale, u32 nbytes, data.
Result file: b"MCUFKR01", u32 count, then per case
    i32 status (0 ok, 1 Init/Prepare failed, 2 Eval failed), u32 persistent bytes,
    u32 scratch count, u32 scratch bytes[count], u32 nbytes, output bytes.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np
from flatbuffers import flexbuffers

from tflm_ops import contract, reference, validity
from tflm_ops.fixedpoint import quantize_multiplier

OP_IDS = {"MCUF_PATCH_EMBED": 0, "MCUF_ATTENTION": 1, "MCUF_MLP": 2, "MCUF_HEAD": 3}
TFLITE_TYPES = {np.dtype(np.int8): 9, np.dtype(np.int32): 2}   # kTfLiteInt8, kTfLiteInt32
STATUS_OK, STATUS_PREPARE_FAILED, STATUS_EVAL_FAILED = 0, 1, 2


@dataclass
class Case:
    code: str
    inputs: list                       # numpy arrays in SPEC order; inputs[0] is the activation
    options: dict
    in_zp: int
    out_zp: int
    out_shape: tuple
    in_place: bool = False
    overlap: bool = False              # output starts 1 byte into the input (must be rejected)
    raw_options: bytes | None = None   # sent instead of `options` (fuzzing)
    in_dtypes: list = field(default_factory=list)   # override TfLiteType ids (fuzzing)

    def expected(self) -> np.ndarray:
        """The numpy reference output (the activation's leading 1 is the batch axis)."""
        out = reference.run_op(self.code, list(self.inputs), self.options, self.in_zp, self.out_zp)
        return np.asarray(out, np.int8).reshape(self.out_shape)



@dataclass
class Result:
    status: int
    persistent_bytes: int
    scratch_bytes: list
    output: bytes


def _tensor_bytes(array: np.ndarray, zero_point: int, type_id: int | None = None) -> bytes:
    array = np.ascontiguousarray(array)
    type_id = TFLITE_TYPES[array.dtype] if type_id is None else type_id
    head = struct.pack(f"<ii{array.ndim}iif", type_id, array.ndim, *array.shape, zero_point, 1.0)
    data = array.tobytes()
    return head + struct.pack("<I", len(data)) + data


def write_cases(path, cases) -> None:
    out = [b"MCUFKT01", struct.pack("<I", len(cases))]
    for case in cases:
        options = case.raw_options if case.raw_options is not None else flexbuffers.Dumps(case.options)
        flags = int(case.in_place) | 2 * int(case.overlap)
        out.append(struct.pack("<IIII", OP_IDS[case.code], flags, len(case.inputs), len(options)))
        out.append(bytes(options))
        for i, array in enumerate(case.inputs):
            type_id = case.in_dtypes[i] if i < len(case.in_dtypes) and case.in_dtypes[i] is not None else None
            out.append(_tensor_bytes(array, case.in_zp if i == 0 else 0, type_id))
        shape = tuple(case.out_shape)
        out.append(struct.pack(f"<ii{len(shape)}iifI", 9, len(shape), *shape, case.out_zp, 1.0, 0))
    with open(path, "wb") as handle:
        handle.write(b"".join(out))


def read_results(path) -> list:
    buf = open(path, "rb").read()
    if buf[:8] != b"MCUFKR01":
        raise ValueError(f"{path} is not a kernel result file")
    (count,), pos = struct.unpack_from("<I", buf, 8), 12
    results = []
    for _ in range(count):
        status, persistent, n_scratch = struct.unpack_from("<iII", buf, pos)
        pos += 12
        scratch = list(struct.unpack_from(f"<{n_scratch}I", buf, pos))
        pos += 4 * n_scratch
        (nbytes,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        results.append(Result(status, persistent, scratch, buf[pos:pos + nbytes]))
        pos += nbytes
    return results


# ---- the contract of a case ---------------------------------------------------------------

def scratch_bytes(case: Case) -> int:
    """Bytes of the one scratch buffer the contract lists for the case's op."""
    dims = contract.op_dims(case.code, case.options, case.inputs[0].shape, case.out_shape)
    return contract.scratch_bytes(case.code, **case.options, **dims)


_TYPE_NAMES = {9: "int8", 2: "int32", 1: "float32"}


def prepare_error(case: Case) -> str | None:
    """Why the kernel's Prepare rejects the case according to tflm_ops/validity.py, or None."""
    options = validity.read_options(case.raw_options) if case.raw_options is not None else case.options
    inputs = []
    for i, array in enumerate(case.inputs):
        type_id = case.in_dtypes[i] if i < len(case.in_dtypes) else None
        dtype = np.dtype(array.dtype).name if type_id is None else _TYPE_NAMES[type_id]
        inputs.append(validity.TensorInfo(dtype, array.shape, case.in_zp if i == 0 else 0,
                                          None if i == 0 else array))
    output = validity.TensorInfo("int8", tuple(case.out_shape), case.out_zp)
    return validity.prepare_error(case.code, options, inputs, output)


# ---- random SPEC-valid cases ------------------------------------------------------------

def _rq(rng, out: int, acc_std: float, target: float = 40.0) -> np.ndarray:
    """Requant rows scaling an accumulator of std acc_std to about `target`, varied per row."""
    reals = target / max(acc_std, 1.0) * rng.uniform(0.5, 2.0, out) * np.where(rng.random(out) > 0.1, 1, -1)
    rows = [quantize_multiplier(r) for r in reals]
    return np.array(rows, np.int32).reshape(out, 2)


def _factor(rng, inp: int, out: int, x_std: float, target: float = 40.0) -> list:
    w = np.clip(np.round(rng.normal(0, 45, (out, inp))), -127, 127).astype(np.int8)
    acc_std = x_std * 45 * math.sqrt(inp)
    bias = np.round(rng.normal(0, acc_std * 0.3, out)).astype(np.int32)
    return [w, bias, _rq(rng, out, acc_std, target)]


def linear_tensors(rng, inp: int, out: int, rank: int, x_std: float = 40.0, target: float = 40.0) -> list:
    if rank == 0:
        return _factor(rng, inp, out, x_std, target)
    return _factor(rng, inp, rank, x_std) + _factor(rng, rank, out, 40.0, target)


def ln_table(rng, e: int) -> np.ndarray:
    reals = 40.0 / 65536 * rng.uniform(0.5, 2.0, e) * np.where(rng.random(e) > 0.05, 1, -1)
    rows = [(*quantize_multiplier(r), int(rng.integers(-20, 21))) for r in reals]
    return np.array(rows, np.int32).reshape(e, 3)


def _zp(rng) -> int:
    return int(rng.integers(-100, 101))


def gelu_lut(rng) -> np.ndarray:
    s_a, z_a, z_g = rng.uniform(0.02, 0.08), _zp(rng), _zp(rng) // 2
    s_g = s_a * rng.uniform(0.6, 1.4)
    i = np.arange(256, dtype=np.float64)
    a = s_a * (i - 128 - z_a)
    g = a / (1.0 + np.exp(-1.702 * a))
    return np.clip(z_g + np.round(g / s_g), -128, 127).astype(np.int8)


def _activation(rng, shape, zp: int) -> np.ndarray:
    return np.clip(np.round(rng.normal(zp, 40, shape)), -128, 127).astype(np.int8)


def _res(rng) -> dict:
    m, s = quantize_multiplier(rng.uniform(0.3, 0.9))
    return {"res_mult": m, "res_shift": s}


def _block_zp(rng) -> int:
    """Zero point of a block's output: near 0, so residual sums rarely saturate."""
    return int(rng.integers(-30, 31))


def patch_embed_case(rng, image=None, *, h=None, w=None, c=None, patch=None, e=None, has_cls=None,
                     kernel=None, patches_per_pass=None, has_pos=1, relu=0, feature_map=False, in_zp=-128) -> Case:
    """A random patch embedding; `kernel` > `patch` is the convolutional tokenizer; without `has_pos`,
    with `relu` and as a `feature_map` ([1, Gh, Gw, E] output), a layer of a convolutional stem."""
    patch = patch or int(rng.choice([2, 4, 7]))
    kernel = kernel or patch
    if image is None:
        h = h or patch * int(rng.integers(1, 5))
        w = w or patch * int(rng.integers(1, 5))
        c = c or int(rng.choice([1, 3]))
        image = _activation(rng, (1, h, w, c), -20)
    _, h, w, c = image.shape
    e = e or int(rng.choice([8, 16, 24, 52]))
    has_cls = 0 if feature_map else int(rng.integers(0, 2)) if has_cls is None else has_cls
    t = (h // patch) * (w // patch) + has_cls
    pos_m, pos_s = quantize_multiplier(rng.uniform(0.3, 1.5)) if has_pos else (0, 0)
    patches_per_pass = patches_per_pass or int(rng.choice([1, 4]))
    options = contract.make_options("MCUF_PATCH_EMBED", patch=patch, kernel=kernel, has_cls=has_cls,
                                    patches_per_pass=patches_per_pass, has_pos=has_pos, relu=relu,
                                    pos_zp=_zp(rng) if has_pos else 0, pos_mult=pos_m, pos_shift=pos_s)
    inputs = [image, *_factor(rng, kernel * kernel * c, e, 60.0)]
    if has_pos:
        inputs.append(_activation(rng, (t, e), options["pos_zp"]))
    if has_cls:
        inputs.append(_activation(rng, (e,), 0))
    out_shape = (1, h // patch, w // patch, e) if feature_map else (1, t, e)
    return Case("MCUF_PATCH_EMBED", inputs, options, in_zp, _zp(rng), out_shape)


def stem_case(rng, image=None, **kwargs) -> Case:
    """A random layer of a convolutional stem: no position embedding, ReLU or not, a feature-map output
    (3 x 3 of stride 1 or 2, or 2 x 2 of stride 2, as CCT's tokenizers are)."""
    patch = int(rng.choice([1, 2]))
    kernel = int(rng.choice([patch, 3])) if patch == 2 else 3
    return patch_embed_case(rng, image, patch=patch, kernel=kernel, has_pos=0,
                            relu=int(rng.integers(0, 2)), feature_map=bool(rng.integers(0, 2)), **kwargs)


def attention_case(rng, x=None, x_zp=None, *, t=None, e=None, heads=None, head_dim=None, qkv_rank=None,
                   proj_rank=None, tokens_per_pass=None, keep_t=None) -> Case:
    if x is None:
        x = _activation(rng, (1, t or int(rng.integers(1, 20)), e or int(rng.choice([8, 12, 16, 32]))), _zp(rng))
    in_zp = int(np.round(np.mean(x))) if x_zp is None else x_zp
    e = x.shape[2]
    heads = heads or int(rng.integers(1, 4))
    head_dim = head_dim or int(rng.choice([4, 6, 8, 16]))
    d = heads * head_dim
    qkv_rank = int(rng.choice([0, 0, 3, 8])) if qkv_rank is None else qkv_rank
    proj_rank = int(rng.choice([0, 0, 2, 5])) if proj_rank is None else proj_rank
    # scores of std ~ 1600 sqrt(head_dim) span about 16 octaves of exp2 in Q8 (x up to ~4000)
    sm_mult, shift = quantize_multiplier(2000.0 / (1600.0 * math.sqrt(head_dim)) * rng.uniform(0.3, 3.0))
    sm_shift = 31 - shift                                    # SPEC 1.3: M / 2^S
    ctx_m, ctx_s = quantize_multiplier(40.0 / (32768 * 40) * rng.uniform(0.5, 2.0))
    tokens_per_pass = tokens_per_pass or int(rng.choice(contract.CHOICES["MCUF_ATTENTION"]["tokens_per_pass"]))
    options = contract.make_options(
        "MCUF_ATTENTION", heads=heads, qkv_dim=d, qkv_rank=qkv_rank, proj_rank=proj_rank,
        tokens_per_pass=tokens_per_pass, keep_t=int(rng.integers(0, 2)) if keep_t is None else keep_t,
        ln_eps=int(rng.integers(0, 5000)), ln_zp=_zp(rng), qkv_t_zp=_zp(rng) if qkv_rank else 0,
        proj_t_zp=_zp(rng) if proj_rank else 0, sm_mult=sm_mult, sm_shift=sm_shift, ctx_mult=ctx_m,
        ctx_shift=ctx_s, **_res(rng))
    inputs = [x, ln_table(rng, e), *linear_tensors(rng, e, 3 * d, qkv_rank),
              *linear_tensors(rng, d, e, proj_rank, target=20.0)]
    return Case("MCUF_ATTENTION", inputs, options, in_zp, _block_zp(rng), x.shape)


def mlp_case(rng, x=None, x_zp=None, *, t=None, e=None, hidden=None, fc1_rank=None, fc2_rank=None) -> Case:
    if x is None:
        x = _activation(rng, (1, t or int(rng.integers(1, 20)), e or int(rng.choice([8, 12, 16, 32]))), _zp(rng))
    in_zp = int(np.round(np.mean(x))) if x_zp is None else x_zp
    e = x.shape[2]
    hidden = hidden or int(rng.choice([8, 30, 64]))
    fc1_rank = int(rng.choice([0, 0, 4, 7])) if fc1_rank is None else fc1_rank
    fc2_rank = int(rng.choice([0, 0, 3, 9])) if fc2_rank is None else fc2_rank
    options = contract.make_options(
        "MCUF_MLP", hidden=hidden, fc1_rank=fc1_rank, fc2_rank=fc2_rank, ln_eps=int(rng.integers(0, 5000)),
        ln_zp=_zp(rng), fc1_t_zp=_zp(rng) if fc1_rank else 0, fc2_t_zp=_zp(rng) if fc2_rank else 0,
        fc1_zp=_zp(rng), gelu_zp=_zp(rng), **_res(rng))
    inputs = [x, ln_table(rng, e), *linear_tensors(rng, e, hidden, fc1_rank), gelu_lut(rng),
              *linear_tensors(rng, hidden, e, fc2_rank, target=20.0)]
    return Case("MCUF_MLP", inputs, options, in_zp, _block_zp(rng), x.shape)


def head_case(rng, x=None, x_zp=None, *, t=None, e=None, classes=None, pool=None) -> Case:
    if x is None:
        x = _activation(rng, (1, t or int(rng.integers(1, 20)), e or int(rng.choice([8, 12, 16, 32]))), _zp(rng))
    in_zp = int(np.round(np.mean(x))) if x_zp is None else x_zp
    t, e = x.shape[1], x.shape[2]
    classes = classes or int(rng.choice([2, 10, 17]))
    pool = int(rng.integers(0, 3)) if pool is None else pool
    ln_zp, ln_eps, ln = _zp(rng), int(rng.integers(0, 5000)), ln_table(rng, e)
    seq = pool == contract.POOL_SEQ
    pool_m, pool_s = quantize_multiplier(rng.uniform(0.5, 2.0) / (32768 if seq else t))
    inputs = [x, ln, *linear_tensors(rng, e, classes, 0)]
    sm_mult, sm_shift = 1 << 30, 1
    if seq:
        score = rng.integers(-127, 128, e).astype(np.int8)
        scores = reference.layer_norm(x, ln, ln_eps, ln_zp)[0].astype(np.int64) @ score
        spread = max(int(scores.max() - scores.min()), 1)       # map it to 0.3 .. 3 x 1024 Q8 log2 units
        sm_mult, shift = quantize_multiplier(1024.0 / spread * rng.uniform(0.3, 3.0))
        sm_shift = 31 - shift                                    # SPEC 1.3: M / 2^S
        inputs.append(score)
    options = contract.make_options("MCUF_HEAD", pool=pool, ln_eps=ln_eps, ln_zp=ln_zp,
                                    pool_zp=ln_zp if pool == contract.POOL_CLS else _zp(rng), pool_mult=pool_m,
                                    pool_shift=pool_s, sm_mult=sm_mult, sm_shift=sm_shift)
    return Case("MCUF_HEAD", inputs, options, in_zp, _zp(rng), (1, classes))


def conv_tokenizer_case(rng) -> Case:
    """A random patch embedding whose windows overlap by 1 to 4 pixels."""
    patch = int(rng.choice([1, 2, 4, 7]))
    return patch_embed_case(rng, patch=patch, kernel=patch + int(rng.integers(1, 5)))


RANDOM_CASES = (patch_embed_case, attention_case, mlp_case, head_case, conv_tokenizer_case, stem_case)


def chain_cases(rng, image: np.ndarray, *, patch: int, e: int, blocks: int, has_cls: int, pool: int,
                kernel: int | None = None, stem=()) -> list:
    """A small random-weight ViT on one real image: each op's input is the reference
    output of the op before it (real activation statistics). `stem`: (patch, kernel, channels)
    of each convolutional stem layer (ReLU, no position embedding) before the patch embedding."""
    cases, x, x_zp = [], image, -128
    for stem_patch, stem_kernel, channels in stem:
        case = patch_embed_case(rng, x, patch=stem_patch, kernel=stem_kernel, e=channels, has_pos=0, relu=1,
                                feature_map=True, in_zp=x_zp)
        cases.append(case)
        x, x_zp = case.expected(), case.out_zp
    case = patch_embed_case(rng, x, patch=patch, e=e, has_cls=has_cls, kernel=kernel, in_zp=x_zp)
    cases.append(case)
    x = case.expected()
    for _ in range(blocks):
        for make in (attention_case, mlp_case):
            case = make(rng, x, case.out_zp)
            cases.append(case)
            x = case.expected()
    cases.append(head_case(rng, x, case.out_zp, pool=pool))
    return cases
