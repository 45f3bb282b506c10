"""`mcuformer arduino-lib`: the self-contained library's layout and manifests, and that it
compiles as Arduino compiles it (src/ the only include path) for Cortex-M7 and Cortex-M4,
links, and classifies like the reference on the QEMU Cortex-M7."""
import json
import re
import shutil
import subprocess

import pytest
from conftest import assert_one_line_error, run_cli
from package_specs import library_json_errors, library_properties_errors
from package_fixtures import converted_model, reference_logits
from tflm_fixtures import arm_or_skip, tflm_root_or_skip

from common.errors import UserError
from deploy.arduino_lib import write_arduino_library

NUM_IMAGES = 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fashion_mnist):
    return converted_model(tmp_path_factory.mktemp("arduino"), fashion_mnist)


@pytest.fixture(scope="module")
def lib(model_dir, tmp_path_factory):
    tflm_root_or_skip()
    return write_arduino_library(model_dir, tmp_path_factory.mktemp("lib") / "FashionViT", name="FashionViT",
                                 num_images=NUM_IMAGES)


@pytest.mark.tflm
def test_library_layout(lib, model_dir, fashion_mnist):
    props = (lib / "library.properties").read_text()
    assert re.search(r"^name=FashionViT$", props, re.M) and re.search(r"^includes=FashionViT.h$", props, re.M)
    assert "depends" not in props and "Arduino_TensorFlowLite" not in props
    header = (lib / "src" / "FashionViT.h").read_text()
    assert "kImageHeight = 28" in header and "kNumClasses = 10" in header
    arena, arena_host = map(int, re.search(r"kArenaSize = sizeof\(void\*\) == 4 \? (\d+) : (\d+);", header).groups())
    report = json.loads((model_dir / "report.json").read_text())
    for size, required in ((arena, report["required_arena_bytes"]), (arena_host, report["required_arena_bytes_host"])):
        assert size % 16 == 0 and required <= size < required + 16
    assert f"| arena (RAM, static) | {arena} |" in (lib / "README.md").read_text()
    # the model array is byte-identical to the converter's .tflite and const (flash)
    cc = (lib / "src" / "FashionViT_model_data.cpp").read_text()
    assert re.search(r"const unsigned char mcuformer_model_data\[\]", cc)
    body = cc[cc.index("{") + 1:cc.index("}")]
    values = bytes(int(v, 0) for v in re.findall(r"0x[0-9a-fA-F]+|\d+", body))
    assert values == (model_dir / "model.tflite").read_bytes()
    kernels = sorted(p.name for p in (lib / "src" / "mcuformer").iterdir())
    assert "mcuf_ops.h" in kernels and any(k.endswith(".cpp") for k in kernels)
    # the example embeds the first test images in the model's int8 format
    ino = lib / "examples" / "FashionViTClassify" / "FashionViTClassify.ino"
    assert "classifier.predictInt8" in ino.read_text()
    samples = (ino.parent / "sample_images.h").read_text()
    first = [int(v) for v in re.findall(r"-?\d+", samples.split("{", 3)[3].split("}")[0])]
    assert first == (fashion_mnist.x_test[0].reshape(-1).astype(int) - 128).tolist()
    labels = re.search(r"kSampleLabels\[kNumSampleImages\] = \{ ([^}]*) \}", samples).group(1)
    assert [int(v) for v in labels.split(",")] == fashion_mnist.y_test[:NUM_IMAGES].tolist()
    assert "Classifier\tKEYWORD1" in (lib / "keywords.txt").read_text()


@pytest.mark.tflm
def test_tflm_is_bundled_and_pruned(lib):
    src = lib / "src"
    units = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.suffix in (".cpp", ".c", ".cc")]
    assert not [u for u in units if u.endswith(".cc")]                  # renamed for Arduino
    assert "tensorflow/lite/micro/micro_interpreter.cpp" in units
    # no builtin kernel (the model registers only the four custom ops), test, example or CMSIS-NN source
    kernels = [u for u in units if u.startswith("tensorflow/lite/micro/kernels/")]
    assert kernels == ["tensorflow/lite/micro/kernels/kernel_util.cpp"]
    assert not [u for u in units if re.search(r"(^|/)(tests?|examples?)/|_test\.cpp$|^third_party/|^signal/", u)]
    # every quoted include of a bundled file resolves beside the file or from src/ alone
    files = [p for p in src.rglob("*") if p.is_file()]
    for path in files:
        if path.suffix in (".h", ".cpp", ".c"):
            for name in re.findall(r'^\s*#\s*include\s*"([^"]+)"', path.read_text(errors="replace"), re.M):
                bundled = [p for p in files if p.as_posix().endswith("/" + name)]
                if bundled and not (path.parent / name).is_file():
                    assert (src / name).is_file(), (path.relative_to(src), name)


@pytest.mark.tflm
def test_manifests_follow_the_specifications(lib):
    assert library_properties_errors((lib / "library.properties").read_text()) == []
    manifest = json.loads((lib / "library.json").read_text())
    assert library_json_errors(manifest) == []
    flags = " ".join(manifest["build"]["flags"])
    assert "-DTF_LITE_STATIC_MEMORY" in flags and "-DCMSIS_NN" in flags
    assert manifest["examples"][0]["base"] == "examples/FashionViTClassify"
    # the rules bite: each broken field is named
    assert library_properties_errors("name=9_\nversion=1.0\ncategory=Machine Learning\n") == [
        "missing author", "missing maintainer", "missing sentence", "missing paragraph", "missing url",
        "name '9_': letters, digits, space _ . - only, at most 63", "version '1.0' is not semver",
        "category 'Machine Learning' not one of the allowed"]
    reserved = library_properties_errors("name=Arduino_X\nversion=1.0.0\n")
    assert reserved[-1] == "names starting with Arduino are reserved"
    assert library_json_errors({"name": "my_lib", "version": "1.0.0", "platforms": ["avr"],
                                "build": {"cflags": []}}) == [
        "name 'my_lib': letters, digits and single dashes inside, at most 50", "platforms ['avr']: * or known names",
        "unknown build field cflags"]


def test_bad_inputs(model_dir, tmp_path):
    with pytest.raises(UserError, match="run `mcuformer convert"):
        write_arduino_library(tmp_path, tmp_path / "lib")
    with pytest.raises(UserError, match="library name"):
        write_arduino_library(model_dir, tmp_path / "lib", name="9lives")
    (tmp_path / "exists").mkdir()
    with pytest.raises(UserError, match="--force"):
        write_arduino_library(model_dir, tmp_path / "exists")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="CRC-32 0x[0-9a-f]{8} does not match the converter's"):
        write_arduino_library(broken, tmp_path / "lib2")
    assert not (tmp_path / "lib2").exists() and not (tmp_path / "lib").exists()


def test_cli_error_is_one_line(tmp_path):
    proc = run_cli("arduino-lib", str(tmp_path / "nope"), "--out", str(tmp_path / "lib"))
    assert_one_line_error(proc, "mcuformer convert")


def _sketch_elf(lib, cpu, work):
    from deploy.package_build import compile_arduino_library, link_for_qemu

    objects, archive = compile_arduino_library(lib, cpu, work)
    assert {"FashionViT.cpp.o", "FashionViT_model_data.cpp.o", "FashionViTClassify.ino.o"} <= {o.name for o in objects}
    return link_for_qemu(lib, objects, archive, cpu, work / "sketch.elf")


@pytest.mark.tflm
def test_compiles_links_and_classifies_on_cortex_m7(lib, model_dir, fashion_mnist, tmp_path):
    from deploy.package_build import CORTEX_M7
    from deploy.qemu import run_semihosting

    arm_or_skip()
    elf = _sketch_elf(lib, CORTEX_M7, tmp_path)
    assert elf.read_bytes()[:4] == b"\x7fELF" and elf.read_bytes()[18] == 40         # EM_ARM
    printed = run_semihosting(elf)
    names = fashion_mnist.class_names
    rows = re.findall(r"^image (\d+): predicted (.+), expected (.+)$", printed, re.M)
    assert [int(r[0]) for r in rows] == list(range(NUM_IMAGES)), printed[-500:]
    reference = reference_logits(model_dir, fashion_mnist, NUM_IMAGES)
    assert [names.index(r[1]) for r in rows] == reference.argmax(axis=1).tolist()
    assert [names.index(r[2]) for r in rows] == fashion_mnist.y_test[:NUM_IMAGES].tolist()


@pytest.mark.tflm
def test_compiles_and_links_for_cortex_m4(lib, tmp_path):
    from deploy.package_build import CORTEX_M4

    arm_or_skip()
    elf = _sketch_elf(lib, CORTEX_M4, tmp_path)
    attributes = subprocess.run(["arm-none-eabi-readelf", "-A", str(elf)], capture_output=True, text=True).stdout
    assert "Tag_CPU_arch: v7E-M" in attributes and "Tag_FP_arch: VFPv4-D16" in attributes     # the M4's FPU
    assert "Tag_ABI_VFP_args: VFP registers" in attributes                                  # hard float


@pytest.mark.tflm
@pytest.mark.slow
def test_tflm_tree_is_generated_with_the_projects_python_whatever_the_path(tmp_path, monkeypatch):
    """TFLM's scripts need numpy and Pillow; a PATH whose python3 lacks them must not matter, nor
    running under an outer make (`make test`: its MAKELEVEL made the inner make print directory lines)."""
    from deploy.tflm_tree import package_tree

    root = tflm_root_or_skip()
    monkeypatch.setenv("TFLM_ROOT", str(root))
    monkeypatch.setenv("MCUFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("MAKELEVEL", "1")
    monkeypatch.setenv("MAKEFLAGS", "w")
    tree = package_tree()
    assert (tree / "tensorflow" / "lite" / "micro" / "micro_interpreter.cpp").is_file()


def test_without_the_projects_python_tflm_scripts_are_refused_in_one_line(tmp_path, monkeypatch):
    import importlib.util

    from deploy.tflm_tree import generated_tree

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "PIL" else real(name, *a))
    monkeypatch.setenv("MCUFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("deploy.tflm.tree_commit", lambda root: "0" * 40)
    with pytest.raises(UserError, match=r"lacks Pillow; run `make setup`") as err:
        generated_tree(tmp_path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()                 # nothing written
