"""`mcuformer arduino-lib`: the generated library's layout, and that it
compiles for Cortex-M7 against TFLM's own source tree."""
import re
import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from common.errors import UserError
from deploy.arduino_lib import compile_check, tflm_arduino_tree, write_arduino_library


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fashion_mnist):
    from converter.convert import ConvertOptions, convert
    from keras_supernet.arch import ArchConfig
    from keras_supernet.static_vit import build_vit

    config = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=16, num_classes=10,
                        num_heads=[2], qkv_dim=[16], mlp_hidden=[32], fc1_rank=[4])
    root = tmp_path_factory.mktemp("arduino")
    build_vit(config).save(root / "subnet.keras")
    convert(root / "subnet.keras", root / "model", fashion_mnist,
            ConvertOptions(calib=32, eval_images=50, baseline=False), progress=False)
    return root / "model"


def test_library_layout(model_dir, tmp_path, fashion_mnist):
    lib = write_arduino_library(model_dir, tmp_path / "lib", name="FashionViT", num_images=2)
    props = (lib / "library.properties").read_text()
    assert re.search(r"^name=FashionViT$", props, re.M)
    assert re.search(r"^includes=FashionViT.h$", props, re.M)
    assert re.search(r"^depends=Arduino_TensorFlowLite$", props, re.M)
    header = (lib / "src" / "FashionViT.h").read_text()
    assert "kImageHeight = 28" in header and "kNumClasses = 10" in header
    arena = int(re.search(r"kArenaSize = (\d+);", header).group(1))
    import json
    required = json.loads((model_dir / "report.json").read_text())["required_arena_bytes"]
    assert arena % 16 == 0 and required <= arena < required + 16
    # the model array is byte-identical to the converter's .tflite and const (flash)
    cc = (lib / "src" / "FashionViT_model_data.cpp").read_text()
    assert re.search(r"const unsigned char mcuformer_model_data\[\]", cc)
    body = cc[cc.index("{") + 1:cc.index("}")]
    values = bytes(int(v, 0) for v in re.findall(r"0x[0-9a-fA-F]+|\d+", body))
    assert values == (model_dir / "model.tflite").read_bytes()
    # every kernel source is there, includes rewritten to the flat src/mcuformer folder
    kernels = sorted(p.name for p in (lib / "src" / "mcuformer").iterdir())
    assert "mcuf_ops.h" in kernels and any(k.endswith(".cpp") for k in kernels)
    for k in (lib / "src" / "mcuformer").iterdir():
        for inc in re.findall(r'#include "([^"]+)"', k.read_text()):
            if inc.rsplit("/", 1)[-1] in kernels or inc.rsplit("/", 1)[-1].replace(".h", ".cpp") in kernels:
                assert "/" not in inc, (k.name, inc)
    # the example embeds the first test images in the model's int8 format
    ino = lib / "examples" / "FashionViTClassify" / "FashionViTClassify.ino"
    assert "classifier.predictInt8" in ino.read_text()
    samples = (ino.parent / "sample_images.h").read_text()
    first = [int(v) for v in re.findall(r"-?\d+", samples.split("{", 3)[3].split("}")[0])]
    assert first == (fashion_mnist.x_test[0].reshape(-1).astype(int) - 128).tolist()
    labels = re.search(r"kSampleLabels\[kNumSampleImages\] = \{ ([^}]*) \}", samples).group(1)
    assert [int(v) for v in labels.split(",")] == fashion_mnist.y_test[:2].tolist()


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


@pytest.mark.tflm
def test_compiles_for_cortex_m7(model_dir, tmp_path):
    from deploy.tflm import find_tflm, missing_reason

    root = find_tflm()
    if root is None:
        pytest.skip(missing_reason())
    if shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("arm-none-eabi-g++ not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    lib = write_arduino_library(model_dir, tmp_path / "lib", name="FashionViT")
    objects = compile_check(lib, tflm_arduino_tree(root), tmp_path / "obj")
    names = {o.name for o in objects}
    assert {"FashionViT.o", "FashionViT_model_data.o", "FashionViTClassify.ino.o"} <= names
    assert all(o.stat().st_size > 0 for o in objects)
    # a real Cortex-M7 object: ARM ELF, hard-float attributes
    assert objects[0].read_bytes()[:4] == b"\x7fELF" and objects[0].read_bytes()[18] == 40   # EM_ARM
