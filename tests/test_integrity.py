"""A corrupted model never runs (issue 10): the converter's CRC-32 in every
generated source, checked before an interpreter is built (host runner,
example app on Cortex-M7, Arduino Classifier, Python `verify`); structural
checks before TFLM reads a model; the load path fuzzed under ASan/UBSan."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from common.errors import UserError
from converter.tflite_checks import TfliteCheckError, check_structure
from tests.fuzz_seeds import DEMO_LIKE, write_seed_models
from tests.tflm_fixtures import arm_or_skip, int8_images, tflm_root_or_skip

CHECK_VALUE = (b"123456789", 0xCBF43926)    # the CRC-32 (IEEE) catalogue's check value


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fashion_mnist):
    """A converted demo-like model folder."""
    from converter.convert import ConvertOptions, convert
    from keras_supernet.arch import ArchConfig
    from keras_supernet.static_vit import build_vit

    root = tmp_path_factory.mktemp("integrity")
    build_vit(ArchConfig(**DEMO_LIKE)).save(root / "subnet.keras")
    convert(root / "subnet.keras", root / "model", fashion_mnist,
            ConvertOptions(calib=32, eval_images=20, baseline=False), progress=False)
    return root / "model"


def _schema_model(data: bytes):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema.Model.GetRootAs(data, 0)


def _custom_options_spans(data: bytes) -> list:
    """(start, length) of each operator's custom options, found with the tflite-micro wheel's schema."""
    graph = _schema_model(data).Subgraphs(0)
    spans = []
    for i in range(graph.OperatorsLength()):
        table = graph.Operators(i)._tab
        field = table.Offset(14)                       # Operator.custom_options (field 5)
        spans.append((table.Vector(field), table.VectorLen(field)))
    return spans


def _with_buffer_index(data: bytes, index: int) -> bytes:
    """`data` with the first constant tensor's buffer index set to `index`."""
    graph = _schema_model(data).Subgraphs(0)
    out = bytearray(data)
    for i in range(graph.TensorsLength()):
        table = graph.Tensors(i)._tab
        field = table.Offset(8)                        # Tensor.buffer (field 2)
        if field:
            struct.pack_into("<I", out, table.Pos + field, index)
            return bytes(out)
    raise AssertionError("no tensor with a buffer field")


def _with_plan_offset(data: bytes, offset: int) -> bytes:
    """`data` with the first tensor that the offline plan places at a positive offset moved to `offset`."""
    model = _schema_model(data)
    out = bytearray(data)
    for i in range(model.MetadataLength()):
        if model.Metadata(i).Name() == b"OfflineMemoryAllocation":
            table = model.Buffers(model.Metadata(i).Buffer())._tab
            start = table.Vector(table.Offset(4))       # Buffer.data (field 0)
            words = struct.unpack_from(f"<{table.VectorLen(table.Offset(4)) // 4}i", data, start)
            slot = next(n for n, word in enumerate(words[3:], 3) if word > 0)
            struct.pack_into("<i", out, start + 4 * slot, offset)
            return bytes(out)
    raise AssertionError("no offline memory plan")


def corrupted_models(data: bytes) -> dict:
    """Every corrupted-model class of the issue, by name."""
    rng = np.random.default_rng(10)
    out = {"truncated_half": data[:len(data) // 2], "truncated_100": data[:-100], "truncated_1": data[:-1],
           "truncated_to_8": data[:8], "empty": b""}
    for n, pos in enumerate(rng.choice(len(data), 20, replace=False)):
        flipped = bytearray(data)
        flipped[pos] ^= int(rng.integers(1, 256))
        out[f"flip_{n}_at_{pos}"] = bytes(flipped)
    for n, (start, length) in enumerate(_custom_options_spans(data)):
        garbled = bytearray(data)
        garbled[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        out[f"custom_options_{n}"] = bytes(garbled)
    buffers = _schema_model(data).BuffersLength()
    out["buffer_index_out_of_range"] = _with_buffer_index(data, buffers + 3)
    out["buffer_index_max"] = _with_buffer_index(data, 0xFFFFFFFF)
    # TFLM places online buffers after an offline one as they come: an odd offset misaligns
    # the kernels' int32 scratch (found by benchmarks/fuzz.py under UBSan)
    out["plan_offset_misaligned"] = _with_plan_offset(data, 785)
    return out


# ---- without TFLM ---------------------------------------------------------------------

def test_c_array_carries_the_crc32():
    from converter.convert import c_array

    header, body = c_array(CHECK_VALUE[0])
    assert "extern const unsigned int mcuformer_model_data_crc32;" in header
    assert f"const unsigned int mcuformer_model_data_crc32 = 0x{CHECK_VALUE[1]:08x}u;" in body


def test_c_crc32_equals_zlib(tmp_path):
    """deploy/runner/model_crc.cc (compiled with the host's g++) on the check value and random bytes."""
    from deploy import tflm_make

    if shutil.which("g++") is None:
        pytest.skip("g++ not installed (apt-get install g++)")
    main = tmp_path / "crc_main.cc"
    main.write_text('#include <cstdio>\n#include <vector>\n#include "deploy/runner/model_crc.h"\n'
                    'int main(int, char** argv) { std::vector<unsigned char> b; int c; FILE* f = std::fopen(argv[1], "rb");\n'
                    '  while ((c = std::fgetc(f)) != EOF) b.push_back(c);\n'
                    '  std::printf("%08x", mcuformer::Crc32(b.data(), b.size())); }\n')
    binary = tmp_path / "crc"
    subprocess.run(["g++", "-O2", f"-I{tflm_make.PROJECT_ROOT}", str(main),
                    str(tflm_make.RUNNER_DIR / "model_crc.cc"), "-o", str(binary)], check=True)
    rng = np.random.default_rng(0)
    for data in (CHECK_VALUE[0], b"", rng.integers(0, 256, 100_003, dtype=np.uint8).tobytes()):
        (tmp_path / "data.bin").write_bytes(data)
        got = subprocess.run([str(binary), str(tmp_path / "data.bin")], capture_output=True, text=True, check=True)
        assert int(got.stdout, 16) == zlib.crc32(data)
    assert zlib.crc32(CHECK_VALUE[0]) == CHECK_VALUE[1]


def test_report_and_sources_carry_the_model_crc32(model_dir):
    data = (model_dir / "model.tflite").read_bytes()
    import json
    report = json.loads((model_dir / "report.json").read_text())
    assert report["model_crc32"] == f"0x{zlib.crc32(data):08x}"
    assert f"mcuformer_model_data_crc32 = {report['model_crc32']}u;" in (model_dir / "model_data.cc").read_text()


def test_python_checks_reject_structural_corruption(model_dir):
    from converter.interpreter import load_tflite

    data = (model_dir / "model.tflite").read_bytes()
    check_structure(data)
    models = corrupted_models(data)
    for name in ("truncated_half", "truncated_100", "truncated_to_8", "empty"):
        with pytest.raises(TfliteCheckError):
            check_structure(models[name])
    buffers = _schema_model(data).BuffersLength()
    with pytest.raises(TfliteCheckError, match=f"uses buffer {buffers + 3} of {buffers}"):
        check_structure(models["buffer_index_out_of_range"])
    with pytest.raises(TfliteCheckError, match="offline memory plan puts tensor .* at offset 785"):
        check_structure(models["plan_offset_misaligned"])
    (model_dir.parent / "bad.tflite").write_bytes(models["buffer_index_max"])
    with pytest.raises(UserError, match="not a valid MCUFormer .tflite .*uses buffer 4294967295"):
        load_tflite(model_dir.parent / "bad.tflite")
    for name, mutant in models.items():          # never anything but a TfliteCheckError
        try:
            check_structure(mutant)
        except TfliteCheckError as exc:
            assert "\n" not in str(exc), name


def test_verify_reports_a_flipped_model_in_one_line(model_dir, tmp_path):
    flipped = tmp_path / "model"
    shutil.copytree(model_dir, flipped)
    data = bytearray((flipped / "model.tflite").read_bytes())
    data[len(data) // 3] ^= 0x10
    (flipped / "model.tflite").write_bytes(bytes(data))
    proc = run_cli("verify", str(flipped), "--images", "2")
    assert_one_line_error(proc, "CRC-32", f"0x{zlib.crc32(bytes(data)):08x}", "does not match", "convert it again")


def test_a_folder_without_or_with_two_crcs_is_one_line(model_dir, tmp_path):
    import json
    old = tmp_path / "model"
    shutil.copytree(model_dir, old)
    report = json.loads((old / "report.json").read_text())
    report["model_crc32"] = "0x00000000"
    (old / "report.json").write_text(json.dumps(report))
    proc = run_cli("verify", str(old), "--images", "2")
    assert_one_line_error(proc, "report.json and model_data.cc record different CRC-32s", "convert the model again")
    del report["model_crc32"]
    (old / "report.json").write_text(json.dumps(report))
    cc = old / "model_data.cc"
    cc.write_text(re.sub(r"const unsigned int mcuformer_model_data_crc32 = .*\n", "", cc.read_text()))
    proc = run_cli("verify", str(old), "--images", "2")
    assert_one_line_error(proc, "records no CRC-32 of its model", "convert the model again")


@pytest.mark.tflm
def test_arduino_classifier_checks_the_crc_in_begin(model_dir, tmp_path):
    from deploy.arduino_lib import write_arduino_library

    tflm_root_or_skip()                    # the library bundles TFLM

    lib = write_arduino_library(model_dir, tmp_path / "lib", name="Checked", num_images=1)
    source = (lib / "src" / "Checked.cpp").read_text()
    begin = source[source.index("bool Classifier::begin()"):source.index("int Classifier::predictInt8")]
    check = begin.index("mcuformer::Crc32(mcuformer_model_data, mcuformer_model_data_len)")
    assert "!= mcuformer_model_data_crc32" in begin and "return false;" in begin[check:]
    assert check < begin.index("MicroInterpreter(")
    assert '#include "model_crc.h"' in (lib / "src" / "mcuformer" / "model_crc.cpp").read_text()
    assert "mcuformer_model_data_crc32" in (lib / "src" / "Checked_model_data.h").read_text()


# ---- with TFLM: the host runner and the fuzzer under ASan/UBSan ---------------------------

def _run(runner, model, inputs, crc=None):
    cmd = [str(runner), *(["--crc32", f"{crc:08x}"] if crc is not None else []), str(model), str(inputs)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _assert_one_clean_line(proc, name):
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, (name, proc.stderr[-2000:])
    assert proc.returncode in (0, 1), (name, proc.returncode, proc.stderr[-2000:])
    if proc.returncode == 1:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("host_runner: "), (name, proc.stderr)


@pytest.fixture(scope="module")
def runner_asan():
    from deploy import tflm_make
    return tflm_make.host_runner(tflm_root_or_skip(), sanitize=True)


@pytest.mark.tflm
def test_host_runner_refuses_every_corrupted_model_in_one_line(runner_asan, model_dir, tmp_path, fashion_mnist):
    data = (model_dir / "model.tflite").read_bytes()
    crc = zlib.crc32(data)
    inputs = tmp_path / "inputs.bin"
    inputs.write_bytes(int8_images(fashion_mnist, 2).tobytes())
    intact = _run(runner_asan, model_dir / "model.tflite", inputs, crc)
    assert intact.returncode == 0, intact.stderr
    ran_without_crc = []
    for name, mutant in corrupted_models(data).items():
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(mutant)
        with_crc = _run(runner_asan, path, inputs, crc)
        _assert_one_clean_line(with_crc, name)
        assert with_crc.returncode == 1 and "CRC-32" in with_crc.stderr and with_crc.stdout == "", name
        without_crc = _run(runner_asan, path, inputs)      # the checks and TFLM on their own: no crash
        _assert_one_clean_line(without_crc, name)
        if name in ("truncated_half", "truncated_100", "truncated_to_8", "empty", "plan_offset_misaligned") \
                or name.startswith("buffer_index"):
            assert without_crc.returncode == 1 and "can run safely" in without_crc.stderr, name
        if name.startswith("custom_options"):
            assert without_crc.returncode == 1 and "AllocateTensors failed: MCUF_" in without_crc.stderr, name
        if without_crc.returncode == 0:
            ran_without_crc.append(name)
    # what still runs without the CRC: flipped weights and a cut-off padding byte; the CRC is what stops them
    assert all(name.startswith("flip") or name == "truncated_1" for name in ran_without_crc), ran_without_crc


@pytest.mark.tflm
def test_c_and_python_checks_agree(runner_asan, model_dir, tmp_path):
    """Random mutants: whatever the C bounds checks reject, Python rejects with the same words (the
    C flatbuffers verifier also checks fields Python never reads, so it may reject more)."""
    data = (model_dir / "model.tflite").read_bytes()
    inputs = tmp_path / "inputs.bin"
    inputs.write_bytes(bytes(28 * 28))
    rng = np.random.default_rng(3)
    verifier_only = 0
    for n in range(120):
        mutant = bytearray(data)
        if n % 3 == 0:
            mutant = mutant[:int(rng.integers(0, len(data)))]
        elif n % 3 == 1:
            for pos in rng.integers(0, len(data), int(rng.integers(1, 8))):
                mutant[pos] ^= int(rng.integers(1, 256))
        else:
            pos = int(rng.integers(0, len(data) // 4)) * 4
            struct.pack_into("<i", mutant, pos, int(rng.choice([0, -1, 1, 255, 2**31 - 1, -2**31])))
        path = tmp_path / "mutant.tflite"
        path.write_bytes(bytes(mutant))
        proc = _run(runner_asan, path, inputs)
        _assert_one_clean_line(proc, n)
        c_reason = proc.stderr.split("can run safely: ", 1)[1].strip() if "can run safely" in proc.stderr else None
        try:
            check_structure(bytes(mutant))
            py_reason = None
        except TfliteCheckError as exc:
            py_reason = str(exc)
        if c_reason is not None and "flatbuffers verifier" in c_reason:
            verifier_only += py_reason is None
            continue
        assert py_reason == c_reason, (n, py_reason, c_reason)
    assert verifier_only < 40


@pytest.fixture(scope="module")
def fuzz_setup(model_dir, tmp_path_factory, fashion_mnist):
    from deploy import fuzz

    root = tflm_root_or_skip()
    seeds = write_seed_models(tmp_path_factory.mktemp("seeds"), fashion_mnist)
    return fuzz.build_fuzzer(root), [model_dir / "model.tflite", *seeds]


@pytest.mark.tflm
def test_bounded_fuzz_run_finds_no_crash(fuzz_setup, tmp_path):
    from deploy import fuzz

    binary, seeds = fuzz_setup
    with_crc = fuzz.run_fuzzer(binary, seeds, tmp_path / "crash.tflite", max_execs=300, check_crc=True)
    assert not with_crc.crashed, with_crc.crash_report
    assert with_crc.summary["crc_rejected"] == with_crc.summary["executions"] == 300
    run = fuzz.run_fuzzer(binary, seeds, tmp_path / "crash.tflite", max_execs=3000, rng_seed=7)
    assert not run.crashed, (run.crash_report, run.crash_input)
    summary = run.summary
    assert summary["executions"] == 3000 and summary["crc_rejected"] == 0
    assert summary["check_rejected"] > 0 and summary["allocate_failed"] > 0 and summary["ran"] > 0
    assert all(count > 0 for count in summary["mutations"].values()), summary["mutations"]


@pytest.mark.tflm
def test_fuzzer_sees_tflm_crash_without_the_checks(fuzz_setup, tmp_path):
    """With the structural checks off, TFLM alone crashes on the same mutants: the harness sees it
    and keeps the mutant (and the checks are what prevents it)."""
    from deploy import fuzz

    binary, seeds = fuzz_setup
    run = fuzz.run_fuzzer(binary, seeds[:1], tmp_path / "crash.tflite", max_execs=3000, check_model=False)
    assert run.crashed and run.crash_input is not None and run.crash_input.stat().st_size > 0
    assert "Sanitizer" in run.crash_report or "runtime error" in run.crash_report


@pytest.mark.tflm
@pytest.mark.slow
def test_cortex_m7_app_refuses_a_flipped_model(model_dir, tmp_path, fashion_mnist):
    """The example app in QEMU (mps2-an500): one byte of the model array flipped, the CRC
    constant the converter's; the app prints the CRC error and never builds the interpreter."""
    from converter.convert import c_array
    from deploy import app, qemu

    root = tflm_root_or_skip()
    arm_or_skip()
    data = bytearray((model_dir / "model.tflite").read_bytes())
    crc = zlib.crc32(bytes(data))
    data[len(data) // 2] ^= 0x01
    header, body = c_array(bytes(data))
    body = re.sub(r"_crc32 = 0x[0-9a-f]{8}u;", f"_crc32 = 0x{crc:08x}u;", body)
    (tmp_path / "model_data.h").write_text(header)
    (tmp_path / "model_data.cc").write_text(body)
    spec = app.AppSpec(tmp_path / "model_data.cc", arena_bytes=64 * 1024, images=int8_images(fashion_mnist, 1),
                       labels=fashion_mnist.y_test[:1])
    elf = app.build_app(root, "qemu-m7", spec, tmp_path / "app_qemu.elf")
    with pytest.raises(UserError, match=f"the example app stopped: model CRC-32 0x{zlib.crc32(bytes(data)):08x}, "
                                        f"the converter's 0x{crc:08x}: the model is damaged; not running it"):
        qemu.run_qemu(elf, count_instructions=False)
