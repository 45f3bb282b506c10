"""`mcuformer demo` end to end at micro settings: every stage really runs, the
summary reports measured numbers, and a second run resumes (skips) cleanly."""
import json

import pytest

from mcuformer.demo import DemoSettings, demo_budget, run_demo
from common.errors import UserError

MICRO = DemoSettings(space="fmnist_demo", supernet_epochs=1, supernet_train_limit=1024, supernet_sampling="uniform",
                     supernet_lr=5e-3, val_limit=256, population=4, generations=1, parents=2, mutations=1,
                     crossovers=1, finetune_epochs=1, finetune_train_limit=1024, min_steps=0, calib=32,
                     eval_images=200, verify_images=8)


def test_default_budget_is_a_real_64k_256k_board():
    budget, args = demo_budget()
    assert (budget.sram, budget.flash, budget.max_macs) == (64 * 1024, 256 * 1024, 1_800_000)
    assert args == ["--board", "stm32l432kc", "--max-macs", "1800000"] and "stm32l432kc" in budget.source
    assert demo_budget(max_macs=900_000)[0].max_macs == 900_000
    budget, args = demo_budget(sram="6KiB", flash="224KiB")
    assert (budget.sram, budget.flash, args) == (6 * 1024, 224 * 1024, ["--sram", "6KiB", "--flash", "224KiB"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, run_demo(out, sram="6KiB", flash="224KiB", qemu=False, settings=MICRO)


@pytest.mark.slow
def test_demo_runs_every_stage(demo):
    out, summary = demo
    state = json.loads((out / "demo_state.json").read_text())
    assert list(state["done"]) == ["train-supernet", "search", "finetune", "convert", "verify"]
    for f in ("summary.json", "pareto.png", "subnet.keras", "model/model.tflite", "search/best_subnet.json"):
        assert (out / f).exists(), f
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    # the winner respects the budget the search was given
    assert summary["sram"]["required_arena_bytes_cortex_m"] <= 6 * 1024
    assert 0.0 <= summary["accuracy"]["int8"] <= 1.0 and summary["accuracy"]["test_images"] == 200
    host = summary["verification"]["host"]
    if host and "skipped" not in host:       # with a TFLM tree: measured, bit-exact, arena as planned
        assert host["mismatched_outputs"] == 0
        assert host["arena_used_bytes"] == summary["sram"]["measured_arena_bytes_host"]
        assert abs(host["arena_error_pct"]) <= 2.0


@pytest.mark.slow
def test_demo_resumes_and_refuses_other_settings(demo, capsys):
    out, summary = demo
    again = run_demo(out, sram="6KiB", flash="224KiB", qemu=False, settings=MICRO)
    assert capsys.readouterr().out.count("done earlier, skipped") == 5
    assert again["architecture"] == summary["architecture"]
    with pytest.raises(UserError, match="other settings"):
        run_demo(out, sram="8KiB", flash="224KiB", qemu=False, settings=MICRO)
