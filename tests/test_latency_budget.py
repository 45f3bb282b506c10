"""The instruction-estimate budget (issue 15, "a latency budget"): the memory model's estimate of a
subnet, computed without building it, equals the per-op estimates `mcuformer report` sums over the
converted model; the search budget filters on it; a time cap is converted at the board's clock as
an estimate (one instruction per cycle), never as a measurement."""
import json

import pytest
from conftest import assert_one_line_error, run_cli

from common.errors import UserError
from keras_supernet.arch import ArchConfig
from keras_supernet.space import SearchSpace
from memory_model.memory import Techniques, evaluate
from search.budget import Budget, check_feasible, smallest_achievable
from search.evolution import EvolutionSettings, Search
from tests import test_build

converted = test_build.converted      # the small converted ViT (fixture)
ROOMY = dict(sram=10 << 20, flash=100 << 20)


def test_estimate_equals_the_sum_of_the_reports_per_op_rows(converted):
    config = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10,
                        num_heads=(2, 2), qkv_dim=(32, 32), mlp_hidden=(64, 64), fc1_rank=(0, 16))
    assert json.loads((converted / "report.json").read_text())["arch"] == config.to_dict()
    proc = run_cli("report", str(converted), "--json", "--board", "stm32f746g-disco")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    rows = [op["instructions"] for op in report["ops"] if op["instructions"] is not None]
    assert len(rows) == 2 * config.depth + 2                   # one estimate per custom op of the .tflite
    estimate = evaluate(config).instructions
    assert estimate == sum(rows) == report["totals"]["instructions"]
    assert report["board"]["latency_ms_estimate"] == pytest.approx(estimate / 216e3)
    assert "ESTIMATE" in report["board"]["latency_note"]
    # the report shows the board's flash split: this small model stays in internal flash
    from memory_model.memory import CODE_FLASH_BYTES
    size = (converted / "model.tflite").stat().st_size
    assert report["board"]["flash_split"] == {
        "weights_in": "internal", "internal_flash_bytes": size + CODE_FLASH_BYTES, "external_flash_bytes": 0,
        "internal_flash_capacity": 1 << 20, "external_flash_capacity": 16 << 20, "fits": True}


def test_budget_admits_up_to_the_cap():
    config = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10,
                        num_heads=(2, 2), qkv_dim=(32, 32), mlp_hidden=(64, 64))
    cost = evaluate(config)
    assert Budget(**ROOMY, max_instructions=cost.instructions).admits(cost)
    assert not Budget(**ROOMY, max_instructions=cost.instructions - 1).admits(cost)
    assert Budget(**ROOMY).admits(cost)
    # the builtin-op graph has no estimate, so a cap cannot admit it
    assert evaluate(config, Techniques.off()).instructions is None
    assert not Budget(**ROOMY, max_instructions=10 ** 12).admits(evaluate(config, Techniques.off()))


def test_a_time_cap_is_instructions_at_the_boards_clock():
    # 10 ms at 216 MHz, one instruction per cycle: 10e-3 s x 216e6 /s = 2,160,000
    assert Budget.from_args("stm32f746", max_latency_ms=10).max_instructions == 2_160_000
    assert Budget.from_args("stm32f746", max_instructions=5_000).max_instructions == 5_000
    assert "estimate" in Budget.from_args("stm32f746", max_latency_ms=10).describe()
    with pytest.raises(UserError, match="clock_mhz"):
        Budget.from_args(sram="64KB", flash="1MB", max_latency_ms=10)
    with pytest.raises(UserError, match="not both"):
        Budget.from_args("stm32f746", max_instructions=5, max_latency_ms=10)
    with pytest.raises(UserError, match="positive"):
        Budget.from_args("stm32f746", max_instructions=0)


def test_search_keeps_every_subnet_under_the_cap(tmp_path):
    space = SearchSpace.load("configs/spaces/fmnist.yaml")
    low = smallest_achievable(space)["instructions"]
    with pytest.raises(UserError, match="estimated instructions"):
        check_feasible(space, Budget(**ROOMY, max_instructions=low - 1))
    with pytest.raises(UserError, match="custom-op graph"):
        check_feasible(space, Budget(**ROOMY, max_instructions=10 ** 12), Techniques.off())
    cap = 3 * low

    class Params:
        identity = "params"

        def __call__(self, configs):
            return [c.params() / 1e6 for c in configs]

    settings = EvolutionSettings(population=8, generations=2, parents=3, mutations=4, crossovers=4, seed=2)
    result = Search(space, Budget(**ROOMY, max_instructions=cap), Params(), tmp_path, settings, progress=False).run()
    assert result["budget"]["max_instructions_estimate"] == cap
    estimates = [e["cost"]["instructions_estimate"] for e in result["population"]]
    assert all(n <= cap for n in estimates)
    uncapped = Search(space, Budget(**ROOMY), Params(), tmp_path / "free", settings, progress=False).run()
    assert max(e["cost"]["instructions_estimate"] for e in uncapped["population"]) > cap   # the cap bound


def test_search_cli_refuses_a_time_cap_without_a_clock(tmp_path):
    proc = run_cli("search", "--supernet", str(tmp_path), "--sram", "64KB", "--flash", "1MB",
                   "--max-latency-ms", "5", "--out", str(tmp_path / "s"))
    assert_one_line_error(proc, "--max-latency-ms needs a board with clock_mhz")
