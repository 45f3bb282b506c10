"""C++ kernels (tflm_ops/src) vs the numpy reference (tflm_ops/reference.py): zero LSB difference.

The host test driver tflm_ops/test/kernel_test.cc is built through the TFLM
Makefile (deploy/tflm_make.py) and runs each case through Init/Prepare/Eval;
cases are random SPEC-valid ops, small random-weight ViTs on real
Fashion-MNIST images, and malformed ops that Prepare must reject.
"""
from __future__ import annotations

import math
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.tflm_fixtures import arm_or_skip, tflm_root_or_skip
from tflm_ops import contract, fixedpoint
from tflm_ops.test import kernel_cases as kc

pytestmark = pytest.mark.tflm
ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def _build(name: str, flags=()) -> Path:
    from deploy import tflm_make
    return tflm_make.build_program(tflm_root_or_skip(), tflm_make.HOST, name, app_sources=[ROOT / "tflm_ops/test/kernel_test.cc"],
                               cppflags=flags, kernel_cppflags=flags, ldflags=flags)


@pytest.fixture(scope="module")
def kernel_test():
    return _build("kernel_test")


@pytest.fixture(scope="module")
def kernel_test_sanitized():
    return _build("kernel_test_asan", SANITIZE)


def run_cases(binary: Path, cases, tmp_path: Path, name: str = "cases"):
    """(results, per-case log text) of running `cases` through the driver."""
    cases_path, results_path = tmp_path / f"{name}.bin", tmp_path / f"{name}.out"
    kc.write_cases(cases_path, cases)
    proc = subprocess.run([str(binary), "ops", str(cases_path), str(results_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "runtime error" not in proc.stderr and "Sanitizer" not in proc.stderr, proc.stderr[-3000:]
    logs = re.split(r"^@@case \d+\n", proc.stderr, flags=re.M)[1:]
    results = kc.read_results(results_path)
    assert len(results) == len(logs) == len(cases)
    return results, logs


def assert_bit_exact(cases, results):
    for i, (case, result) in enumerate(zip(cases, results)):
        assert result.status == kc.STATUS_OK, (i, case.code, result.status)
        assert kc.prepare_error(case) is None, (i, case.code, kc.prepare_error(case))
        got = np.frombuffer(result.output, np.int8).reshape(case.out_shape)
        expected = case.expected()
        diff = int(np.count_nonzero(got != expected))
        assert diff == 0, f"case {i} {case.code} in_place={case.in_place}: {diff} bytes differ"
        assert result.scratch_bytes == [kc.scratch_bytes(case)], (i, case.code, result.scratch_bytes)


def both_placements(cases):
    out = []
    for case in cases:
        for in_place in (False, True):
            out.append(kc.Case(case.code, case.inputs, case.options, case.in_zp, case.out_zp,
                               case.out_shape, in_place))
    return out


# ---- fixed point: C twins == fixedpoint.py == TFLM ---------------------------------------

def test_exp2_table_in_header_equals_python():
    text = (ROOT / "tflm_ops/src/mcuf_fixedpoint.h").read_text()
    body = re.search(r"MCUF_EXP2_Q15\[256\] = \{([^}]*)\}", text).group(1)
    assert [int(v) for v in body.replace(",", " ").split()] == [int(v) for v in fixedpoint.EXP2_Q15]


def test_fixedpoint_helpers_match_python_and_tflm(kernel_test, tmp_path):
    rng = np.random.default_rng(7)
    n = 4000
    shift = rng.integers(-31, 31, n)
    mult = rng.integers(1 << 30, 1 << 31, n) * rng.choice([-1, 1], n)
    mult[:20] = 0
    mult[20:40] = (1 << 31) - 1
    x = np.array([int(rng.integers(-(1 << (31 - max(s, 0))), 1 << (31 - max(s, 0)))) for s in shift])
    x[40:60] = [-(1 << 31) if s <= 0 else -(1 << (31 - s)) for s in shift[40:60]]
    v = rng.integers(0, 1 << 62, n, dtype=np.int64).astype(np.uint64)
    v[:8] = [0, 1, 2, 3, 4, (1 << 62) - 1, (1 << 64) - 1, (1 << 63) + 12345]
    v[8:100] = [k * k + d for k in rng.integers(0, 1 << 31, 46) for d in (-1, 0)][:92]
    num = rng.integers(-(1 << 50), 1 << 50, n)
    num[:10] = [-7, -6, -5, -3, -1, 0, 1, 3, 5, 7]
    den = rng.integers(1, 1 << 20, n)
    den[:10] = 2
    records = b"".join(struct.pack("<iiiQqq", int(a), int(m), int(s), int(b), int(c), int(d))
                       for a, m, s, b, c, d in zip(x, mult, shift, v, num, den))
    (tmp_path / "fp.bin").write_bytes(b"MCUFFP01" + struct.pack("<I", n) + records)
    subprocess.run([str(kernel_test), "fixedpoint", str(tmp_path / "fp.bin"), str(tmp_path / "fp.out")],
                   check=True, timeout=60)
    buf = (tmp_path / "fp.out").read_bytes()
    assert buf[:8] == b"MCUFFR01"
    rows = np.frombuffer(buf[12:12 + 24 * n], dtype=np.dtype([("c", "<i4"), ("tflm", "<i4"),
                                                              ("isqrt", "<u8"), ("rdiv", "<i8")]))
    exp2 = np.frombuffer(buf[12 + 24 * n:], "<i4")
    assert np.array_equal(rows["c"], rows["tflm"])
    assert np.array_equal(rows["c"], fixedpoint.mbqm(x, mult, shift))
    assert [int(r) for r in rows["isqrt"]] == [math.isqrt(int(b)) for b in v]
    small = v < (1 << 62)
    assert np.array_equal(rows["isqrt"][small].astype(np.int64), fixedpoint.isqrt(v[small].astype(np.int64)))
    assert np.array_equal(rows["rdiv"], fixedpoint.rdiv(num, den))
    assert np.array_equal(exp2, fixedpoint.EXP2_Q15)


# ---- bit-exactness ----------------------------------------------------------------------

def conv_tokenizer_edges(rng) -> list:
    """Overlapping windows in place both ways: top down (E <= P*P*C) and bottom up, halos
    taller than the stride, odd and even K - P, a window larger than the image; windows of
    more than one 256-column chunk (507 = 256 + 251, 300 = 256 + 44 columns) with padding
    inside chunks and 5 or 6 patches per strip (passes of 4 patches and of 1 or 2); each with
    4 patches per pass and with 1 (chunks of 64 columns: 507 = 7 * 64 + 59, 300 = 4 * 64 + 44)."""
    shapes = [(8, 8, 3, 2, 7, 8), (5, 4, 3, 1, 4, 3), (8, 6, 1, 2, 8, 16), (12, 8, 1, 4, 7, 24),
              (2, 4, 1, 2, 7, 5), (6, 6, 2, 3, 4, 40), (20, 50, 3, 10, 13, 12), (8, 24, 3, 4, 10, 52)]
    return [kc.patch_embed_case(rng, h=h, w=w, c=c, patch=p, kernel=k, e=e, has_cls=i % 2, patches_per_pass=ppp)
            for i, (h, w, c, p, k, e) in enumerate(shapes) for ppp in (1, 4)]


def attention_pass_edges(rng) -> list:
    """Each (tokens_per_pass, keep_t): a last pass of 1 and of 7 tokens, keep_t with a full-rank qkv
    (nothing kept), token counts where the residual-term table fits segment a (4 tokens_per_pass T >=
    1 KiB) and where it does not, a V row whose packed padding reads the next row."""
    shapes = [(9, 8, 2, 4, 3, 2), (15, 7, 1, 5, 0, 3), (33, 12, 3, 4, 5, 0), (64, 8, 2, 8, 4, 4)]
    return [kc.attention_case(rng, t=t, e=e, heads=h, head_dim=hd, qkv_rank=qr, proj_rank=pr,
                              tokens_per_pass=tpp, keep_t=keep)
            for t, e, h, hd, qr, pr in shapes for tpp in (4, 8) for keep in (0, 1)]


def softmax_shift_cases(rng):
    """Attention at each sm_shift regime of the kernel's exponent (S = 1; S in [2, 32], where
    score gaps are capped where x reaches 4095; S >= 33), gaps below and above the cap."""
    cases = []
    for shift in (1, 2, 17, 30, 32, 33, 40, 62):
        case = kc.attention_case(rng, t=9, e=8, heads=2, head_dim=4, qkv_rank=3, proj_rank=0)
        case.options["sm_shift"] = shift
        cases.append(case)
    return cases


def test_random_ops_bit_exact_in_place_and_not(kernel_test, tmp_path):
    rng = np.random.default_rng(2024)
    cases = [make(rng) for make in kc.RANDOM_CASES for _ in range(40)]
    # edges: one token, one head of width 1, E not a multiple of 4, full and low rank both ways
    cases += [kc.attention_case(rng, t=1, e=5, heads=1, head_dim=1, qkv_rank=0, proj_rank=0),
              kc.attention_case(rng, t=3, e=7, heads=3, head_dim=3, qkv_rank=1, proj_rank=9),
              kc.mlp_case(rng, t=1, e=5, hidden=3, fc1_rank=2, fc2_rank=0),
              kc.head_case(rng, t=1, e=5, classes=1, pool=0),
              kc.head_case(rng, t=1, e=5, classes=1, pool=2),          # sequence pooling of a lone token
              kc.head_case(rng, t=30, e=7, classes=3, pool=2),
              kc.patch_embed_case(rng, h=3, w=3, c=2, patch=1, e=5, has_cls=1),
              kc.patch_embed_case(rng, h=8, w=4, c=3, patch=4, e=4, has_cls=0)]
    cases += conv_tokenizer_edges(rng) + softmax_shift_cases(rng) + attention_pass_edges(rng)
    cases = both_placements(cases)
    results, _ = run_cases(kernel_test, cases, tmp_path)
    assert_bit_exact(cases, results)
    saturated = np.mean([np.mean(np.abs(c.expected().astype(int)) >= 127) for c in cases])
    assert saturated < 0.2, f"test data saturates {saturated:.0%} of outputs; rescale the generators"


def test_fashion_mnist_vits_bit_exact(kernel_test, fashion_mnist, tmp_path):
    from converter.qmodel import quantize_images
    images = quantize_images(np.asarray(fashion_mnist.x_test[:3], np.float64).reshape(-1, 28, 28, 1) / 255.0)
    rng = np.random.default_rng(11)
    cases = []
    for image, (patch, has_cls, pool, e) in zip(images, [(4, 0, 0, 24), (7, 1, 1, 16), (4, 0, 2, 20)]):
        cases += kc.chain_cases(rng, image[None], patch=patch, e=e, blocks=2, has_cls=has_cls, pool=pool)
    for image, (patch, kernel, e) in zip(images, [(4, 7, 24), (7, 9, 16), (2, 3, 4)]):   # conv tokenizers
        cases += kc.chain_cases(rng, image[None], patch=patch, kernel=kernel, e=e, blocks=1, has_cls=0, pool=0)
    for image, stem in zip(images, [[(2, 3, 24)], [(1, 3, 16), (2, 3, 32)]]):   # convolutional stems
        cases += kc.chain_cases(rng, image[None], stem=stem, patch=2, kernel=3, e=24, blocks=1, has_cls=0, pool=0)
    cases = both_placements(cases)
    results, _ = run_cases(kernel_test, cases, tmp_path)
    assert_bit_exact(cases, results)


def test_opdata_sizes_match_header_and_spec(kernel_test, tmp_path):
    rng = np.random.default_rng(3)
    cases = [make(rng) for make in kc.RANDOM_CASES]
    results, _ = run_cases(kernel_test, cases, tmp_path)
    header = (ROOT / "tflm_ops/src/mcuf_ops.h").read_text()
    spec = (ROOT / "tflm_ops/SPEC.md").read_text()
    names = {"MCUF_PATCH_EMBED": "PatchEmbed", "MCUF_ATTENTION": "Attention", "MCUF_MLP": "Mlp",
             "MCUF_HEAD": "Head"}
    for case, result in zip(cases, results):
        declared = int(re.search(rf"k{names[case.code]}OpDataBytes = (\d+)", header).group(1))
        row = re.search(rf"^\| `{case.code}` \| (\d+) \| (\d+) \|", spec, re.M)
        assert row, f"SPEC.md lacks the persistent-bytes row of {case.code}"
        assert result.persistent_bytes == declared == int(row.group(1)) == int(row.group(2))
        assert result.persistent_bytes == contract.OPDATA_BYTES[case.code]


# ---- Prepare rejects malformed ops -------------------------------------------------------

def _malformed(rng, base: kc.Case) -> list:
    """Single-fault variants of a valid case; each must fail in Prepare."""
    variants = []

    def variant(**changes):
        fields = dict(code=base.code, inputs=list(base.inputs), options=dict(base.options), in_zp=base.in_zp,
                      out_zp=base.out_zp, out_shape=base.out_shape)
        fields.update(changes)
        variants.append(kc.Case(**fields))

    variant(inputs=base.inputs[:-1])                                      # wrong tensor count
    variant(inputs=base.inputs + [base.inputs[-1]])
    variant(options={**base.options, "version": base.options["version"] + 1})   # wrong version
    variant(options={**base.options, "version": base.options["version"] - 1})   # an older version
    key = sorted(base.options)[int(rng.integers(len(base.options)))]
    variant(options={k: v for k, v in base.options.items() if k != key})  # missing option
    variant(options={**base.options, key: "seven"})                       # not an integer
    variant(options={**base.options, key: int(rng.choice([-(1 << 40), 1 << 41, 1 << 62]))})  # out of range
    variant(raw_options=b"")                                              # no FlexBuffer
    variant(raw_options=bytes(rng.integers(0, 256, 24, dtype=np.uint8)))  # garbage
    variant(raw_options=struct.pack("<i", 5) + b"\x04\x01")               # a truncated scalar
    idx = int(rng.integers(len(base.inputs)))                             # shape mismatch
    arr = base.inputs[idx]
    axis = int(rng.integers(arr.ndim))
    if base.code == "MCUF_HEAD" and idx == 0 and axis == 1:              # the head takes any token count
        axis = 2
    grown = np.concatenate([arr, np.take(arr, [0], axis=axis)], axis=axis)
    variant(inputs=base.inputs[:idx] + [grown] + base.inputs[idx + 1:])
    variant(out_shape=tuple(base.out_shape[:-1]) + (base.out_shape[-1] + 1,))
    wrong = [None] * len(base.inputs)                                     # unsupported type
    wrong[idx] = 1 if arr.dtype == np.int8 else 9                         # float32 / int8-for-int32
    variant(in_dtypes=wrong)
    if "patches_per_pass" in base.options:                                # in range, not 1 or 4
        variant(options={**base.options, "patches_per_pass": 3})
    if "tokens_per_pass" in base.options:                                 # in range, not 4 or 8
        variant(options={**base.options, "tokens_per_pass": int(rng.choice([5, 6, 7]))})
        variant(options={**base.options, "keep_t": 2})                    # keep_t is 0 or 1
    if "kernel" in base.options:                                          # window smaller than its stride
        variant(options={**base.options, "kernel": base.options["patch"] - 1})
    if base.options.get("pool") == 2:                                     # a score tensor without seq pooling
        variant(options={**base.options, "pool": 0})
    return variants


def test_prepare_rejects_malformed_ops_with_a_message(kernel_test, tmp_path):
    rng = np.random.default_rng(99)
    cases = [v for make in kc.RANDOM_CASES for _ in range(4) for v in _malformed(rng, make(rng))]
    results, logs = run_cases(kernel_test, cases, tmp_path)
    for i, (case, result, log) in enumerate(zip(cases, results, logs)):
        assert result.status == kc.STATUS_PREPARE_FAILED, (i, case.code, result.status, log)
        assert re.search(rf"^{case.code}: ", log, re.M), (i, case.code, log)
        assert kc.prepare_error(case), (i, case.code, "tflm_ops/validity.py accepts what Prepare rejects", log)


def test_fuzzed_options_never_crash(kernel_test, tmp_path):
    """Random byte flips in valid FlexBuffer options: Prepare fails with a message or the op runs,
    and tflm_ops/validity.py gives the same verdict."""
    from flatbuffers import flexbuffers
    rng = np.random.default_rng(5)
    cases = []
    # The conv tokenizer's map is the patch embedding's with one more key: fuzzing it adds no parser case.
    for make in (kc.patch_embed_case, kc.attention_case, kc.mlp_case, kc.head_case):
        for _ in range(30):
            case = make(rng)
            raw = bytearray(flexbuffers.Dumps(case.options))
            for pos in rng.integers(0, len(raw), int(rng.integers(1, 4))):
                raw[pos] = int(rng.integers(0, 256))
            case.raw_options = bytes(raw)
            cases.append(case)
    results, logs = run_cases(kernel_test, cases, tmp_path)
    for case, result, log in zip(cases, results, logs):
        assert result.status in (kc.STATUS_OK, kc.STATUS_PREPARE_FAILED), log
        if result.status == kc.STATUS_PREPARE_FAILED:
            assert re.search(rf"^{case.code}: ", log, re.M), log
        assert (result.status == kc.STATUS_PREPARE_FAILED) == (kc.prepare_error(case) is not None), (
            case.code, log, kc.prepare_error(case))


def test_fuzzed_tensor_shapes_rejected(kernel_test, tmp_path):
    """One input or the output replaced by a random-shape, random-type tensor: Prepare rejects it."""
    rng = np.random.default_rng(12)
    cases = []
    for make in kc.RANDOM_CASES:
        for _ in range(25):
            case = make(rng)
            shape = tuple(int(v) for v in rng.integers(1, 9, int(rng.integers(1, 5))))
            idx = int(rng.integers(len(case.inputs) + 1))
            if idx == len(case.inputs):
                case.out_shape = shape
                unchanged = shape == tuple(case.out_shape)
            else:
                dtype = rng.choice([np.int8, np.int32])
                unchanged = shape == case.inputs[idx].shape and dtype == case.inputs[idx].dtype
                case.inputs[idx] = rng.integers(-100, 100, shape).astype(dtype)
            if not unchanged:
                cases.append(case)
    results, logs = run_cases(kernel_test, cases, tmp_path)
    for case, result, log in zip(cases, results, logs):
        assert result.status == kc.STATUS_PREPARE_FAILED, (case.code, log)
        assert re.search(rf"^{case.code}: ", log, re.M), log
        assert kc.prepare_error(case), (case.code, log)


def test_partial_overlap_rejected_in_eval(kernel_test, tmp_path):
    rng = np.random.default_rng(8)
    cases = [make(rng) for make in kc.RANDOM_CASES]
    for case in cases:
        case.overlap = True
    results, logs = run_cases(kernel_test, cases, tmp_path)
    for case, result, log in zip(cases, results, logs):
        assert result.status == kc.STATUS_EVAL_FAILED and "partially overlaps" in log, (case.code, log)


# ---- sanitizers ------------------------------------------------------------------------

@pytest.mark.slow
def test_asan_ubsan_clean(kernel_test_sanitized, fashion_mnist, tmp_path):
    rng = np.random.default_rng(31)
    valid = both_placements([make(rng) for make in kc.RANDOM_CASES for _ in range(5)] + conv_tokenizer_edges(rng)
                            + attention_pass_edges(rng))
    malformed = [v for make in kc.RANDOM_CASES for v in _malformed(rng, make(rng))]
    results, _ = run_cases(kernel_test_sanitized, valid + malformed, tmp_path)
    assert_bit_exact(valid, results[:len(valid)])
    assert all(r.status == kc.STATUS_PREPARE_FAILED for r in results[len(valid):])


# ---- the CMSIS-NN path on an emulated Cortex-M7 ------------------------------------------

@pytest.mark.slow
def test_cmsis_nn_kernels_bit_exact_on_cortex_m7(fashion_mnist, tmp_path):
    from converter.qmodel import quantize_images
    rng = np.random.default_rng(17)
    image = quantize_images(np.asarray(fashion_mnist.x_test[:1], np.float64) / 255.0)
    cases = [make(rng) for make in kc.RANDOM_CASES for _ in range(3)]
    cases += [kc.attention_case(rng, t=3, e=7, heads=3, head_dim=3, qkv_rank=1, proj_rank=9),
              kc.attention_case(rng, t=1, e=8, heads=2, head_dim=4),    # p = 32768: unpacked context
              kc.mlp_case(rng, t=2, e=5, hidden=3, fc1_rank=2, fc2_rank=0)]
    cases += kc.chain_cases(rng, image, patch=7, e=16, blocks=1, has_cls=1, pool=0)
    cases += kc.chain_cases(rng, image, patch=4, kernel=7, e=24, blocks=0, has_cls=0, pool=0)
    cases += kc.chain_cases(rng, image, patch=4, e=20, blocks=1, has_cls=0, pool=2)   # sequence pooling
    cases += conv_tokenizer_edges(rng) + softmax_shift_cases(rng) + attention_pass_edges(rng)
    cases = both_placements(cases)
    # MCUFormer-shaped blocks (240/20 + class token: 145 tokens of 192), in place
    cases += [kc.attention_case(rng, t=145, e=192, heads=3, head_dim=64, qkv_rank=48, proj_rank=0,
                                tokens_per_pass=8, keep_t=1),
              kc.mlp_case(rng, t=145, e=192, hidden=768, fc1_rank=0, fc2_rank=96)]
    for case in cases[-2:]:
        case.in_place = True
    kc.write_cases(tmp_path / "cases.bin", cases)
    from deploy import cortex_m_kernels
    root = tflm_root_or_skip()
    arm_or_skip()
    results, _ = cortex_m_kernels.run_driver(cortex_m_kernels.build_driver(root, (tmp_path / "cases.bin").read_bytes()))
    (tmp_path / "results.bin").write_bytes(results)
    assert_bit_exact(cases, kc.read_results(tmp_path / "results.bin"))
