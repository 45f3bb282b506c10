"""`mcuformer demo` end to end at micro settings: every stage really runs, the
summary reports measured numbers, and a second run resumes (skips) cleanly."""
import json

import pytest

from converter.range_choice import method_name
from mcuformer.demo import DemoSettings, demo_budget, run_demo
from common.errors import UserError
from tests.benchmark_modules import load_benchmark
from tests.tflm_fixtures import tflm_root_or_skip

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


def _expected_stages() -> list:
    from deploy.tflm import find_tflm

    packages = ["arduino-lib", "export-cmake"] if find_tflm() else []
    return ["train-supernet", "search", "finetune", "convert", "verify", *packages]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, run_demo(out, sram="6KiB", flash="224KiB", qemu=False, settings=MICRO)


@pytest.mark.slow
def test_demo_runs_every_stage(demo):
    out, summary = demo
    state = json.loads((out / "demo_state.json").read_text())
    assert list(state["done"]) == _expected_stages()
    if _expected_stages()[5:]:              # with a TFLM tree: the Arduino library and the CMake package
        assert set(summary["packages"]) == {"arduino-lib", "export-cmake"}
        for package in summary["packages"].values():
            assert (out / package["folder"]).is_dir() and package["bytes"] > 100_000
    for f in ("summary.json", "pareto.png", "subnet.keras", "model/model.tflite", "search/best_subnet.json"):
        assert (out / f).exists(), f
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    # the winner respects the budget the search was given
    assert summary["sram"]["required_arena_bytes_cortex_m"] <= 6 * 1024
    # accuracies on 200 test images are multiples of 1/200; the int8 one is the converter's report's
    assert summary["accuracy"]["test_images"] == 200
    assert summary["accuracy"]["int8"] * 200 == pytest.approx(round(summary["accuracy"]["int8"] * 200))
    report = json.loads((out / "model" / "report.json").read_text())
    assert summary["accuracy"]["int8"] == report["int8_accuracy"]
    # the activation ranges were chosen on the demo's validation images, never the test set
    choice = report["quantization"]["range_choice"]
    assert choice["validation_images"] == MICRO.val_limit
    assert summary["accuracy"]["int8_ranges"] == "auto: " + method_name(choice)


@pytest.mark.slow
@pytest.mark.tflm
def test_demo_measures_its_model_in_tflm(demo):
    """With a TFLM tree the summary carries what TFLM measured: bit-exact outputs, the planned arena."""
    tflm_root_or_skip()
    out, summary = demo
    host = summary["verification"]["host"]
    report = json.loads((out / "model" / "report.json").read_text())
    assert host["mismatched_outputs"] == 0
    assert host["arena_used_bytes"] == summary["sram"]["measured_arena_bytes_host"] == report["planned_arena_bytes_host"]
    assert host["arena_bytes"] == (report["required_arena_bytes_host"] + 15) // 16 * 16


@pytest.mark.slow
def test_demo_resumes_and_refuses_other_settings(demo, capsys):
    out, summary = demo
    again = run_demo(out, sram="6KiB", flash="224KiB", qemu=False, settings=MICRO)
    assert capsys.readouterr().out.count("done earlier, skipped") == len(_expected_stages())
    assert again["architecture"] == summary["architecture"]
    with pytest.raises(UserError, match="other settings"):
        run_demo(out, sram="8KiB", flash="224KiB", qemu=False, settings=MICRO)


@pytest.mark.slow
@pytest.mark.tflm
def test_accuracy_benchmark_runs_its_finished_models_in_tflm(demo, tmp_path, monkeypatch):
    """benchmarks/accuracy_fmnist.py --verify-tflm (the demo's model stands in for a finished stage):
    TFLM on the host runs the stage's model over the images of its int8 number, output bytes equal
    to the reference's, so its accuracy is the converter's; a second call re-runs nothing."""
    tflm_root_or_skip()
    bench = load_benchmark("accuracy_fmnist")
    out, _ = demo
    work = tmp_path / "work"
    (work / "mcu_64k" / "winner").mkdir(parents=True)
    (work / "mcu_64k" / "winner" / "model").symlink_to(out / "model")
    record = bench.model_record(out / "model")
    document = tmp_path / "accuracy.json"
    document.write_text(json.dumps({"results": {"mcu_64k/winner": record}}))
    args = bench.parse_args(["--work", str(work), "--results", str(document), "--verify-tflm"])
    bench.Bench(args).verify_tflm()
    result = json.loads(document.read_text())["results"]["mcu_64k/winner"]
    assert result["tflm_host"] == {"images": 200, "int8_top1": record["int8_top1"], "mismatched_outputs": 0}

    def measured_again(*_, **__):
        raise AssertionError("a measured stage ran again")

    monkeypatch.setattr("deploy.verify.verify", measured_again)
    bench.Bench(args).verify_tflm()
    assert json.loads(document.read_text())["results"]["mcu_64k/winner"] == result
