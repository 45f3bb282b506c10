"""`mcuformer report`: the per-op table of a converted model (memory_model/per_op.py)."""
from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line_error, run_cli
from tests.tflm_fixtures import tflm_root_or_skip

# a demo-sized ViT: 28px / patch 7 (16 tokens + class token), E48, two blocks, a low-rank fc1
DEMO = dict(image_size=28, channels=1, patch_size=7, embed_dim=48, num_classes=10, num_heads=(2, 3),
            qkv_dim=(48, 48), mlp_hidden=(96, 96), fc1_rank=(0, 16), pool="cls")


def _align(n, a=16):
    return -(-n // a) * a


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory, fashion_mnist):
    """The demo-sized ViT (random weights) converted with its builtin baseline."""
    import tf_keras as keras

    from converter.convert import ConvertOptions, convert
    from keras_supernet.arch import ArchConfig
    from keras_supernet.static_vit import build_vit

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("report")
    build_vit(ArchConfig(**DEMO)).save(folder / "demo.keras")
    convert(folder / "demo.keras", folder / "demo", fashion_mnist, ConvertOptions(calib=32, eval_images=64),
            progress=False)
    return folder / "demo"


def _json(model_dir, *flags) -> dict:
    proc = run_cli("report", str(model_dir), "--json", *flags)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_table_lists_every_op_and_marks_the_estimate(demo_dir):
    proc = run_cli("report", str(demo_dir), "--board", "stm32f746")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for label in ("patch_embed", "block0.attn", "block0.mlp", "block1.attn", "block1.mlp", "head", "total"):
        assert label in text
    assert "head in use B" in text and "persistent B" in text and "instructions (est.)" in text
    assert "latency ESTIMATE at 216 MHz" in text and "not measured" in text
    assert "builtin baseline" in text and "fully_connected" in text
    markdown = run_cli("report", str(demo_dir), "--markdown").stdout
    assert "| op | activations B |" in markdown and "| block1.mlp |" in markdown


def test_per_op_arena_adds_up_to_the_plan_and_flash_to_the_file(demo_dir):
    from keras_supernet.arch import ArchConfig

    report = _json(demo_dir)
    saved = json.loads((demo_dir / "report.json").read_text())
    ops, totals = report["ops"], report["totals"]
    arch = ArchConfig(**DEMO)
    t, e = arch.num_tokens, arch.embed_dim
    # the head is the op that reaches highest; the tail is the ops' persistent bytes plus the interpreter's
    assert max(o["head_in_use"] for o in ops) == totals["head_bytes"]
    assert totals["head_bytes"] + sum(o["persistent_bytes"] for o in ops) + totals["interpreter_tail_bytes"] \
        == saved["planned_arena_bytes"]
    # flash: every op's constants plus the flatbuffer's own tables are the written file
    assert sum(o["flash_bytes"] for o in ops) + totals["flatbuffer_structure_bytes"] \
        == (demo_dir / "model.tflite").stat().st_size == saved["flash_bytes"] == totals["flash_bytes"]
    # tokens are overwritten in place: a block's live activations are one token buffer
    assert [o["activation_bytes"] for o in ops[1:-1]] == [_align(t * e)] * 4
    # the image and tokens_0 share one buffer (patch decomposition)
    assert ops[0]["activation_bytes"] == _align(max(28 * 28, t * e))
    # SPEC 2.2's attention scratch, segments aligned to 4: K, V [T*D], then for 4 rows at a time (the
    # attention is this model's peak) h packed (int16), q [4*D], q and ctx packed, int32 scores [4*T],
    # probabilities packed (T padded to 4)
    d = 48
    assert ops[1]["scratch_bytes"] == _align(2 * t * d + 8 * e + 4 * d + 2 * 8 * d + 16 * t + 8 * ((t + 3) // 4 * 4))
    # SPEC 2.5: every custom op's OpData (80 B after 16-alignment at most) is in its persistent bytes
    assert all(64 <= o["persistent_bytes"] <= 112 for o in ops)


def test_custom_op_macs_equal_the_builtin_graphs(demo_dir):
    """The MACs of our ops (from the architecture) and of TFLiteConverter's builtin graph (from its
    tensor shapes) count the same multiply-accumulates."""
    report = _json(demo_dir)
    assert report["totals"]["macs"] == report["baseline"]["macs"] > 0


def test_board_headroom(demo_dir):
    report = _json(demo_dir, "--board", "stm32f746")
    board, totals = report["board"], report["totals"]
    # the arena `mcuformer build` allocates: AllocateTensors' required arena, rounded up to 16
    saved = json.loads((demo_dir / "report.json").read_text())
    assert report["plan"]["required_arena_bytes"] == saved["required_arena_bytes"]
    assert board["arena_bytes"] == _align(saved["required_arena_bytes"]) >= totals["arena_bytes"]
    assert board["sram_headroom_bytes"] == 320 * 1024 - board["arena_bytes"]
    assert board["flash_headroom_bytes"] == 1024 * 1024 - totals["flash_bytes"] - totals["code_flash_bytes"]
    assert board["latency_ms_estimate"] == pytest.approx(totals["instructions"] / 216e3)


def test_not_a_model_folder_is_one_line(tmp_path):
    assert_one_line_error(run_cli("report", str(tmp_path)), "not a converted model folder")


@pytest.mark.tflm
def test_measure_shows_tflm_arena_equal_to_the_host_plan(demo_dir):
    tflm_root_or_skip()
    report = _json(demo_dir, "--measure")
    assert report["measured"]["arena_used_bytes"] == report["plan"]["memory_model_arena_bytes_host"]
    assert report["plan"]["memory_model_arena_bytes"] == report["totals"]["arena_bytes"]


def test_figures_are_the_benchmark_results():
    from pathlib import Path

    from memory_model import op_instructions

    results = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                          / "op_instructions.json").read_text())
    assert op_instructions.FIGURES == results["figures"]
    assert op_instructions.MEASURED["date"] == results["date"]


@pytest.mark.parametrize("shape", ["deit_tiny", "mcuformer_shape"])
def test_instruction_estimate_within_15_percent_of_recorded_qemu_counts(shape):
    """Whole models the figures were not fitted to (benchmarks/results/arena.json, measured under QEMU
    by benchmarks/arena.py): the sum of the per-op estimates."""
    from pathlib import Path

    from keras_supernet import arch as A
    from memory_model.memory import instruction_estimate as estimate

    recorded = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                           / "arena.json").read_text())["models"][shape]
    config = getattr(A, shape)(num_classes=10)
    assert config.describe() == recorded["arch"]
    measured = recorded["ours"]["qemu"]["instructions_per_inference"]
    assert sum(estimate(config)) == pytest.approx(measured, rel=0.15)


@pytest.mark.slow
@pytest.mark.tflm
def test_instruction_estimate_within_15_percent_of_a_fresh_qemu_run(demo_dir):
    """The demo model (not in the fit) on the emulated Cortex-M7: its instructions per inference."""
    from tests.tflm_fixtures import arm_or_skip
    from deploy.verify import verify

    tflm_root_or_skip()
    arm_or_skip()
    result = verify(demo_dir, images=2, use_qemu=True)
    measured = result["qemu"]["instructions_per_inference"]
    if measured is None:
        pytest.skip("this QEMU cannot load the instruction-count plugin")
    assert _json(demo_dir)["totals"]["instructions"] == pytest.approx(measured, rel=0.15)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["deit_tiny", "mcuformer_shape"])
def test_report_of_paper_sized_models_equals_their_measured_arena(shape, tmp_path):
    """DeiT-Tiny- and MCUFormer-shaped models (random weights, 4 random calibration images): the table's
    arena is the Cortex-M7 arena_used_bytes() that benchmarks/arena.py measured under QEMU."""
    from pathlib import Path

    import numpy as np
    import tf_keras as keras

    from common.datasets import Dataset
    from converter.convert import ConvertOptions, convert
    from keras_supernet import arch as A
    from keras_supernet.static_vit import build_vit

    keras.utils.set_random_seed(0)
    config = getattr(A, shape)(num_classes=10)
    images = np.random.default_rng(0).integers(0, 256, (4, config.image_size, config.image_size, 3), np.uint8)
    labels = np.arange(4)
    data = Dataset("random", images, labels, images, labels, [str(i) for i in range(10)])
    build_vit(config).save(tmp_path / "vit.keras")
    convert(tmp_path / "vit.keras", tmp_path / "model", data, ConvertOptions(calib=4, eval_images=2, baseline=False),
            progress=False)
    report = _json(tmp_path / "model")
    recorded = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                           / "arena.json").read_text())["models"][shape]["ours"]
    assert report["totals"]["arena_bytes"] == recorded["qemu"]["arena_used_bytes"]
    assert max(o["head_in_use"] for o in report["ops"]) == report["totals"]["head_bytes"]
    assert sum(o["flash_bytes"] for o in report["ops"]) + report["totals"]["flatbuffer_structure_bytes"] \
        == report["plan"]["report_flash_bytes"] == (tmp_path / "model" / "model.tflite").stat().st_size
    assert len(report["ops"]) == 2 * config.depth + 2


def test_instruction_estimate_within_15_percent_of_the_stock_vits_qemu_counts():
    """The stock tf_keras ViTs of benchmarks/results/byo_vit.json (measured under QEMU, not in the fit)."""
    from pathlib import Path

    from keras_supernet.arch import ArchConfig
    from memory_model.memory import instruction_estimate as estimate

    recorded = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                           / "byo_vit.json").read_text())["models"]
    assert len(recorded) == 3
    for name, row in recorded.items():
        measured = row["ours"]["qemu"]["instructions_per_inference"]
        assert sum(estimate(ArchConfig.from_dict(row["ours"]["arch"]))) == pytest.approx(measured, rel=0.15), name
