"""`mcuformer build` and `mcuformer verify`: budgets checked before compiling,
missing prerequisites as one line, and a converted model built for STM32F746
whose QEMU twin, host run and Python reference agree byte for byte."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from tests.tflm_fixtures import arm_or_skip, builtin_int8_model, tflm_root_or_skip


def _model_dir(path, required_arena_bytes: int):
    """A model folder as `mcuformer convert` lays it out (the graph itself is not run)."""
    from deploy import app

    path.mkdir()
    (path / "model.tflite").write_bytes(builtin_int8_model())
    app.model_array_cc(path / "model.tflite", path)
    arenas = {"planned_arena_bytes": required_arena_bytes - 100, "planned_arena_bytes_host": 2 * required_arena_bytes,
              "required_arena_bytes": required_arena_bytes, "required_arena_bytes_host": 2 * required_arena_bytes}
    (path / "report.json").write_text(json.dumps(arenas))
    return path


def test_build_refuses_an_arena_over_the_boards_sram(tmp_path):
    model = _model_dir(tmp_path / "m", required_arena_bytes=400_000)
    proc = run_cli("build", str(model), "--board", "stm32f746")
    assert_one_line_error(proc, "400000", "327680", "SRAM")
    assert not (model / "build").exists()


def test_build_refuses_weights_over_the_boards_flash(tmp_path):
    model = _model_dir(tmp_path / "m", required_arena_bytes=4_000)
    board = tmp_path / "tiny.yaml"
    board.write_text("name: stm32f746\ncore: cortex-m7\nsram: 320KiB\nflash: 2KiB\n")
    proc = run_cli("build", str(model), "--board", str(board))
    size = (model / "model.tflite").stat().st_size
    assert_one_line_error(proc, str(size), "2048", "flash")


def test_build_names_the_apt_package_of_a_missing_toolchain(tmp_path):
    model = _model_dir(tmp_path / "m", required_arena_bytes=4_000)
    proc = run_cli("build", str(model), env={"PATH": str(tmp_path)})
    assert_one_line_error(proc, "apt-get install gcc-arm-none-eabi")


def test_a_bad_tflm_root_is_one_line(tmp_path):
    model = _model_dir(tmp_path / "m", required_arena_bytes=4_000)
    proc = run_cli("verify", str(model), "--images", "2", env={"TFLM_ROOT": str(tmp_path / "nowhere")})
    assert_one_line_error(proc, "TFLM_ROOT")


def test_verify_without_a_model_folder_is_one_line(tmp_path):
    proc = run_cli("verify", str(tmp_path))
    assert_one_line_error(proc, "not a converted model folder", "mcuformer convert")


@pytest.fixture(scope="module")
def converted(tmp_path_factory, fashion_mnist):
    """A small random-weight ViT through the real converter (no training: outputs, not accuracy, matter)."""
    import tf_keras as keras

    from converter.convert import ConvertOptions, convert
    from keras_supernet.arch import ArchConfig
    from keras_supernet.static_vit import build_vit

    keras.utils.set_random_seed(0)
    config = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10,
                        num_heads=(2, 2), qkv_dim=(32, 32), mlp_hidden=(64, 64), fc1_rank=(0, 16))
    base = tmp_path_factory.mktemp("converted")
    build_vit(config).save(base / "vit.keras")
    convert(base / "vit.keras", base / "model", fashion_mnist,
            ConvertOptions(calib=32, eval_images=16, baseline=False), progress=False)
    return base / "model"


@pytest.mark.tflm
@pytest.mark.slow
def test_build_for_stm32f746_runs_bit_exact_in_qemu(converted):
    tflm_root_or_skip()
    arm_or_skip()
    proc = run_cli("build", str(converted), "--board", "stm32f746", "--qemu", "--host", "--images", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    sections = result["sections"]
    flatbuffer = (converted / "model.tflite").stat().st_size
    assert sections["text"] > flatbuffer                      # the weights stay in flash
    assert sections["bss"] >= result["arena_bytes"] >= result["required_arena_bytes"]
    assert result["arena_bytes"] % 16 == 0 and result["arena_bytes"] - result["required_arena_bytes"] < 16
    assert result["qemu_equals_host"] is True
    assert (converted / "build" / "stm32f746" / "app_stm32f746.elf").exists()
    insns = result["qemu"]["instructions_per_inference"]
    assert len(insns) == 3 and all(n > 100_000 for n in insns)


@pytest.mark.tflm
@pytest.mark.slow
def test_verify_host_and_qemu_equal_the_reference(converted):
    tflm_root_or_skip()
    arm_or_skip()
    proc = run_cli("verify", str(converted), "--images", "20", "--qemu", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["mismatched_outputs"] == 0
    assert result["host"]["mismatched_outputs"] == 0 and result["qemu"]["mismatched_outputs"] == 0
    assert result["arena_measured_on"] == "qemu-cortex-m7"
    # each run got its build's required arena, rounded up to 16, and used what the model planned
    report = json.loads((converted / "report.json").read_text())
    for run, suffix in (("qemu", ""), ("host", "_host")):
        assert result[run]["arena_bytes"] == (report["required_arena_bytes" + suffix] + 15) // 16 * 16
        assert result[run]["arena_used_bytes"] == report["planned_arena_bytes" + suffix]
        assert result[run]["arena_error_pct"] == 0.0
    assert result["planned_arena_bytes_cortex_m"] == report["planned_arena_bytes"]
    assert result["required_arena_bytes_host"] == report["required_arena_bytes_host"]
    # the reference's accuracy on 20 images is k/20, and TFLM on both targets scores the same
    assert result["images"] == 20 and result["int8_accuracy"] * 20 == round(result["int8_accuracy"] * 20)
    assert result["qemu"]["int8_accuracy"] == result["host"]["int8_accuracy"] == result["int8_accuracy"]


def test_verify_without_a_tflm_tree_runs_the_reference_and_says_why(converted, tmp_path):
    env = {"MCUFORMER_CACHE": str(tmp_path / "empty-cache"), "TFLM_ROOT": ""}
    proc = run_cli("verify", str(converted), "--images", "8", "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert "no TFLM tree" in result["host"]["skipped"] and "make tflm" in result["host"]["skipped"]
    assert result["mismatched_outputs"] is None and result["arena_used_bytes"] is None
    report = json.loads((converted / "report.json").read_text())
    assert result["planned_arena_bytes_cortex_m"] == report["planned_arena_bytes"]
    proc = run_cli("verify", str(converted), "--images", "8", "--qemu", env=env)
    assert_one_line_error(proc, "--qemu needs TFLM", "TFLM_ROOT")


def test_verify_resizes_an_rgb_folder_for_a_grayscale_model(converted, tmp_path):
    """32x32 RGB images for a 28x28x1 model: resized as train/search/finetune/convert do (not refused)."""
    from PIL import Image

    from deploy.model_dir import test_images

    colours = {"a": (200, 100, 50), "b": (10, 20, 30)}
    for split in ("train", "test"):
        for name, colour in colours.items():
            (tmp_path / "rgb" / split / name).mkdir(parents=True)
            Image.fromarray(np.full((32, 32, 3), colour, np.uint8)).save(tmp_path / "rgb" / split / name / "0.png")
    env = {"MCUFORMER_CACHE": str(tmp_path / "empty-cache"), "TFLM_ROOT": ""}
    proc = run_cli("verify", str(converted), "--data", str(tmp_path / "rgb"), "--images", "2", "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["images"] == 2
    images, labels = test_images(str(tmp_path / "rgb"), 2, (28, 28, 1))
    luma = [round(0.299 * r + 0.587 * g + 0.114 * b) - 128 for r, g, b in colours.values()]    # ITU-R 601
    assert images.shape == (2, 28, 28, 1) and labels.tolist() == [0, 1]
    assert np.all(images[0] == luma[0]) and np.all(images[1] == luma[1])
