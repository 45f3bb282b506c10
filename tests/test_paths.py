"""The README's commands ("The pipeline, step by step") as a user types them: relative
paths, run from the user's own folder. Builds run make inside the TFLM tree, so a
relative path must never reach it; a failed build leaves no output folder behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import assert_one_line_error

from tests.tflm_fixtures import arm_or_skip, tflm_root_or_skip

WITHOUT_TFLM = {"TFLM_ROOT": "", "MCUFORMER_CACHE": "no-cache"}      # the Python reference only


def cli_in(cwd, *args, env=None):
    """`mcuformer ARGS` started in folder `cwd`."""
    return subprocess.run([sys.executable, "-m", "mcuformer", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=1200)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A user's folder holding out/subnet.keras (a tiny random-weight static ViT), then
    `mcuformer convert out/subnet.keras --out out/model`, as the README writes it."""
    import tf_keras as keras

    from keras_supernet.arch import ArchConfig
    from keras_supernet.static_vit import build_vit

    keras.utils.set_random_seed(0)
    config = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10,
                        num_heads=(2, 2), qkv_dim=(32, 32), mlp_hidden=(64, 64), fc1_rank=(0, 16))
    folder = tmp_path_factory.mktemp("user")
    (folder / "out").mkdir()
    build_vit(config).save(folder / "out" / "subnet.keras")
    proc = cli_in(folder, "convert", "out/subnet.keras", "--out", "out/model", "--calib", "16", "--eval", "16",
                  "--no-baseline")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder


def test_paths_are_absolute_once_parsed(tmp_path, monkeypatch):
    from mcuformer.cli import build_parser

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["convert", "out/subnet.keras", "--out", "out/model"])
    assert (args.subnet, args.out, args.data) == (str(tmp_path / "out/subnet.keras"), str(tmp_path / "out/model"),
                                                  "fashion_mnist")
    args = build_parser().parse_args(["build", "out/model", "--board", "boards/my.yaml", "--data", "imgs"])
    assert (args.model_dir, args.board, args.data) == (str(tmp_path / "out/model"), str(tmp_path / "boards/my.yaml"),
                                                       str(tmp_path / "imgs"))
    assert build_parser().parse_args(["build", "/abs/model", "--board", "stm32f746"]).board == "stm32f746"
    assert build_parser().parse_args(["demo"]).out == str(tmp_path / "out/demo")        # defaults too


def test_readme_convert_verify_and_arduino_lib_with_relative_paths(user_folder):
    model = user_folder / "out" / "model"
    assert sorted(p.name for p in model.iterdir()) == ["model.tflite", "model_data.cc", "model_data.h",
                                                       "report.json"]
    proc = cli_in(user_folder, "verify", "out/model", "--images", "4", "--json", env=WITHOUT_TFLM)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["images"] == 4
    tflm_root_or_skip()                    # the Arduino library bundles TFLM
    proc = cli_in(user_folder, "arduino-lib", "out/model", "--out", "out/MCUFormerModel")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (user_folder / "out" / "MCUFormerModel" / "library.properties").is_file()
    assert (user_folder / "out" / "MCUFormerModel" / "src" / "MCUFormerModel_model_data.cpp").is_file()


def test_convert_refuses_to_replace_a_relative_output_without_force(user_folder):
    proc = cli_in(user_folder, "convert", "out/subnet.keras", "--out", "out/model")
    assert_one_line_error(proc, str(user_folder / "out" / "model"), "--force")


@pytest.mark.tflm
@pytest.mark.slow
def test_readme_build_with_relative_paths(user_folder):
    root = tflm_root_or_skip()
    arm_or_skip()
    proc = cli_in(user_folder, "build", "out/model", "--board", "stm32f746")
    assert proc.returncode == 0, proc.stderr[-2000:]
    built = user_folder / "out" / "model" / "build" / "stm32f746"
    assert (built / "app_stm32f746.elf").is_file() and (built / "build.json").is_file()
    assert not (root / "out").exists()                        # nothing written inside the TFLM tree
    proc = cli_in(user_folder, "build", "out/model", "--board", "stm32f746", "--out", "fw")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (user_folder / "fw" / "app_stm32f746.elf").is_file()


@pytest.mark.tflm
@pytest.mark.slow
def test_a_failed_build_leaves_no_output_folder(user_folder):
    tflm_root_or_skip()
    arm_or_skip()
    broken = user_folder / "out" / "broken"
    shutil.copytree(user_folder / "out" / "model", broken, ignore=shutil.ignore_patterns("build"))
    (broken / "model_data.cc").write_text("this is not C++;\n")
    proc = cli_in(user_folder, "build", "out/broken", "--board", "stm32f746")
    last = proc.stderr.strip().splitlines()[-1]          # after make's progress lines
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith("error: ") and "failed through the TFLM Makefile" in last, last
    assert sorted(p.name for p in broken.iterdir()) == ["model.tflite", "model_data.cc", "model_data.h",
                                                        "report.json"]
