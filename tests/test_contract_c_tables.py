"""tflm_ops/contract.py against the C kernels' own spelling of it (no TFLM needed).

The C sources are parsed with regexes: the kSpecs option tables and their
enums, the constants, the multiplier rule and the option pairs Prepare checks,
the OpData structs and their sizes, the tensor types and linear layers
Prepare expects, and each op's ScratchOf segments (evaluated on random dims).
Any disagreement with contract.py, in either direction, fails here.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tflm_ops import contract

SRC = Path(__file__).resolve().parent.parent / "tflm_ops" / "src"
OP_FILES = {"MCUF_PATCH_EMBED": "mcuf_patch_embed.cc", "MCUF_ATTENTION": "mcuf_attention.cc",
            "MCUF_MLP": "mcuf_mlp.cc", "MCUF_HEAD": "mcuf_head.cc"}


def snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


def source(name: str) -> str:
    """A C source with `int64_t{X}` written as `(X)`, so values read as Python."""
    return re.sub(r"int64_t\{([^{}]*)\}", r"(\1)", (SRC / name).read_text())


def constants() -> dict:
    found = re.findall(r"constexpr int\d+_t (k\w+) = ([^;]+);", source("mcuf_op_common.h"))
    values = {}
    for name, expr in found:
        values[name] = eval(expr, {"__builtins__": {}}, dict(values))
    return values


def c_options(code: str) -> list:
    """(name, min, max) of the op's kSpecs table, after checking its enum names the same options."""
    text = source(OP_FILES[code])
    enum = re.search(r"enum \{\s*(kVersion,[^}]*?),\s*kNumOptions\s*\}", text).group(1)
    table = re.search(r"const OptionSpec kSpecs\[kNumOptions\] = \{(.*?)\};", text, re.S).group(1)
    rows = re.findall(r'\{"(\w+)",\s*([^,{}]+),\s*([^{}]+?)\}', table)
    enum_names = [snake(name.strip()[1:]) for name in enum.split(",")]
    assert enum_names == [name for name, _, _ in rows], f"{code}: enum and kSpecs disagree"
    values = constants()
    return [(name, eval(lo, {"__builtins__": {}}, values), eval(hi, {"__builtins__": {}}, values))
            for name, lo, hi in rows]


@pytest.mark.parametrize("code", contract.OPS)
def test_option_tables_equal_the_contract(code):
    assert c_options(code) == [tuple(spec) for spec in contract.OPTIONS[code]]


def test_constants_equal_the_contract():
    values = constants()
    assert (values["kOpVersion"], values["kMaxSize"], values["kInt32Max"]) == (
        contract.VERSION, contract.MAX_SIZE, contract.INT32_MAX)


def test_multiplier_rule_equals_the_contract():
    body = re.search(r"bool IsValidMultiplier\(.*?\n\}", source("mcuf_op_common.cc"), re.S).group(0)
    low, high = re.search(r"magnitude >= \(\(1\) << (\d+)\) && magnitude < \(\(1\) << (\d+)\)", body).groups()
    shift = re.search(r"shift >= (-?\d+) && shift <= (-?\d+)", body).groups()
    assert (1 << int(low), 1 << int(high)) == contract.MULTIPLIER_MAGNITUDE
    assert tuple(int(s) for s in shift) == contract.SHIFT_RANGE


@pytest.mark.parametrize("code", contract.OPS)
def test_option_rules_prepare_checks_equal_the_contract(code):
    text = source(OP_FILES[code])
    pairs = re.findall(r"IsValidMultiplier\(opt\[k(\w+)Mult\], opt\[k(\w+)Shift\]\)", text)
    assert all(m == s for m, s in pairs)
    assert [snake(m) for m, _ in pairs] == list(contract.MULTIPLIER_PAIRS[code])
    divisible = [(name, snake(divisor)) for name, divisor in re.findall(r"(\w+)\(\) % opt\[k(\w+)\]", text)]
    assert divisible == list(contract.DIVISIBLE.get(code, ()))
    choices = re.findall(r"d->(\w+)\(\) != (\w+) && d->\1\(\) != (\w+)\)", text)
    values = {**constants(), "kTokenBatch": contract.TOKEN_BATCH, "kMaxTokenBatch": contract.MAX_TOKEN_BATCH}
    assert {name: tuple(int(eval(v, {"__builtins__": {}}, values)) for v in vs) for name, *vs in choices} == (
        contract.CHOICES.get(code, {}))


def opdata_bytes(code: str) -> int:
    """sizeof(OpData) from its fields: Options<n> (int64 wide, int32 status, int32 value[n]) then int32s."""
    options_struct = re.search(r"struct Options \{(.*?)\n\s*void Parse", source("mcuf_op_common.h"), re.S).group(1)
    assert re.findall(r"(int\d+_t) (\w+(?:\[kCount\])?);", options_struct) == [
        ("int64_t", "wide"), ("int32_t", "status"), ("int32_t", "value[kCount]")]
    body = re.search(r"struct OpData \{(.*?)\n\};", source(OP_FILES[code]), re.S).group(1)
    fields = [line for line in body.splitlines() if "(" not in line and ";" in line]
    assert fields[0].strip() == "Options<kNumOptions> options;", fields
    int32s = sum(len(re.fullmatch(r"\s*int32_t ([\w, ]+);", line).group(1).split(",")) for line in fields[1:])
    align8 = lambda n: (n + 7) // 8 * 8   # noqa: E731
    return align8(align8(8 + 4 + 4 * len(contract.OPTIONS[code])) + 4 * int32s)


def test_opdata_sizes_equal_the_contract():
    header = (SRC / "mcuf_ops.h").read_text()
    names = dict((code, name) for name, code in re.findall(r'k(\w+)Name = "(\w+)";', header))
    declared = dict(re.findall(r"k(\w+)OpDataBytes = (\d+);", header))
    assert sorted(names) == sorted(contract.OPS)
    for code in contract.OPS:
        assert opdata_bytes(code) == int(declared[names[code]]) == contract.OPDATA_BYTES[code], code
        assert f"sizeof(OpData) == k{names[code]}OpDataBytes" in (SRC / OP_FILES[code]).read_text()


def test_tensor_types_and_linear_layers_equal_the_contract():
    common = source("mcuf_op_common.cc")
    texts = {code: source(OP_FILES[code]) for code in contract.OPS}
    expected = re.findall(r'ExpectTensor\([^;]*?"(\w+)", kTfLite(\w+)', common + "".join(texts.values()))
    assert {what: kind.lower() for what, kind in expected} == contract.TENSOR_TYPES
    factor = re.search(r"bool ExpectFactor\(.*?\n\}", common, re.S).group(0)
    assert tuple(re.findall(r'"(\w+)", kTfLite', factor)) == contract.LINEAR_FACTOR
    assert re.search(r'"gelu_lut", kTfLiteInt8, \{(\d+)\}', texts["MCUF_MLP"]).group(1) == str(contract.GELU_LUT_SIZE)
    for code, text in texts.items():
        calls = re.findall(r'ExpectLinear\(context, node, kOp, "(\w+)", [^,]+, ([^,]+),', text)
        linears = [(name, None if rank == "0" else re.sub(r"d->(\w+)\(\)", r"\1", rank)) for name, rank in calls]
        assert linears == list(contract.LINEARS[code]), code


# ---- scratch segments -------------------------------------------------------------------

def _python_expr(c_expr: str) -> str:
    expr = re.sub(r"options\.value\[k(\w+)\]", lambda m: snake(m.group(1)), c_expr)
    expr = re.sub(r"\bd(?:\.|->)(\w+)(?:\(\))?", r"\1", expr)
    expr = re.sub(r"\b(\w+)\(\)", r"\1", expr)
    expr = re.sub(r"^(.+?) \? (.+?) : (.+)$", r"(\2) if (\1) else (\3)", expr)
    return expr.replace("Max(", "max(").replace("Min(", "min(").replace(" / ", " // ")


def c_scratch(code: str, values: dict) -> list:
    """(segment, bytes) of the op's ScratchOf, evaluated with the C accessors on `values`."""
    text = source(OP_FILES[code])
    names = re.split(r",\s*", re.search(r"enum \{\s*(kScratch\w+(?:,\s*kScratch\w+)*),\s*kNumScratch\s*\};", text).group(1))
    sizes = dict(re.findall(r"size\[kScratch(\w+)\] = ([^;]+);", text))
    namespace = {"__builtins__": {}, "max": max, "min": min, "PackedBytes": contract.packed_bytes,
                 "kTokenBatch": contract.TOKEN_BATCH, "kMaxTokenBatch": contract.MAX_TOKEN_BATCH,
                 "kPatchChunk": contract.PATCH_CHUNK, **values}
    for name, body in re.findall(r"int32_t (\w+)\(\) const \{ return ([^;]+); \}", text):
        if name not in namespace:
            try:
                namespace[name] = eval(_python_expr(body), namespace)
            except NameError:          # accessors the scratch does not use (tensor indices)
                pass
    return [(snake(n[len("kScratch"):]), eval(_python_expr(sizes[n[len("kScratch"):]]), namespace)) for n in names]


def c_layout_bytes(sizes) -> int:
    """The C LayoutScratch loop, its offset rule translated from the source."""
    body = re.search(r"ScratchLayout<kCount> LayoutScratch\(.*?\n\}", source("mcuf_op_common.h"), re.S).group(0)
    cond, then, other = re.search(r"layout\.offset\[i\] = (.+?) \? (.+?) : (.+);", body).groups()
    rule = f"({then}) if ({cond}) else ({other})".replace("size[i]", "size")
    end = 0
    for size in sizes:
        end = eval(rule, {"__builtins__": {}}, {"size": size, "end": end}) + size
    return end


def _random_op(rng, code):
    """Valid random options and the dims of its activations (C field names)."""
    opts = {s.name: int(rng.integers(s.min, min(s.max, s.min + 300) + 1)) for s in contract.OPTIONS[code]}
    for rank in ("qkv_rank", "proj_rank", "fc1_rank", "fc2_rank"):
        if rank in opts and rng.random() < 0.4:
            opts[rank] = 0
    patch = opts["patch"] = int(rng.integers(1, 9)) if code == "MCUF_PATCH_EMBED" else 1
    if code == "MCUF_PATCH_EMBED":
        opts["kernel"] = patch + int(rng.integers(0, 6))
        opts["patches_per_pass"] = int(rng.choice(contract.CHOICES[code]["patches_per_pass"]))
    height, width = patch * int(rng.integers(1, 6)), patch * int(rng.integers(1, 6))
    dims = {"tokens": int(rng.integers(1, 200)), "embed": int(rng.integers(1, 300)), "height": height,
            "width": width, "channels": int(rng.integers(1, 4))}
    return opts, dims


@pytest.mark.parametrize("code", contract.OPS)
def test_scratch_segments_equal_the_contract(code):
    rng = np.random.default_rng(sum(map(ord, code)))
    for _ in range(200):
        opts, dims = _random_op(rng, code)
        x_shape = (1, dims["height"], dims["width"], dims["channels"]) if code == "MCUF_PATCH_EMBED" else (
            1, dims["tokens"], dims["embed"])
        ours = contract.SCRATCH[code](**opts, **contract.op_dims(code, opts, x_shape, (1, dims["tokens"], dims["embed"])))
        theirs = c_scratch(code, {**opts, **dims})
        assert theirs == ours, (code, opts, dims)
        assert c_layout_bytes([s for _, s in theirs]) == contract.layout_bytes([s for _, s in ours])


def test_layout_rule_equals_the_contract_with_empty_segments():
    rng = np.random.default_rng(0)
    for _ in range(300):
        sizes = [int(s) if rng.random() > 0.3 else 0 for s in rng.integers(1, 40, int(rng.integers(1, 8)))]
        assert c_layout_bytes(sizes) == contract.layout_bytes(sizes), sizes


# ---- SPEC.md ----------------------------------------------------------------------------

def test_spec_lists_the_contract_options_and_opdata_bytes():
    spec = (SRC.parent / "SPEC.md").read_text()
    for code in contract.OPS:
        section = spec.split(f"`{code}`", 1)[1]
        listed = re.search(r"Options: (.*?)\.\n", section, re.S).group(1)
        assert re.findall(r"`(\w+)`", listed) == [s.name for s in contract.OPTIONS[code]], code
        row = re.search(rf"^\| `{code}` \| (\d+) \| (\d+) \|", spec, re.M)
        assert int(row.group(1)) == int(row.group(2)) == contract.OPDATA_BYTES[code]
