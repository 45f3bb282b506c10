"""`mcuformer search` end to end on a tiny trained supernet (real fitness)."""
import json

import pytest

from conftest import assert_one_line_error, run_cli
from keras_supernet.arch import ArchConfig
from keras_supernet.space import SearchSpace
from search.budget import smallest_achievable

TINY = {"name": "tiny_fmnist", "channels": 1, "num_classes": 10, "head_dim": 8, "image_size": [28],
        "patch_size": [7, 14], "embed_dim": [16, 24], "depth": [1, 2], "num_heads": [1, 2],
        "mlp_ratio": [1, 2], "rank_ratio": [0.5, "full"]}
SEARCH = ["--population", "4", "--generations", "2", "--parents", "2", "--mutations", "2", "--crossovers", "2",
          "--val-limit", "120"]


def _train(out, data, seed):
    import tensorflow as tf
    from keras_supernet.train import SupernetTrainer, TrainSettings
    SupernetTrainer(SearchSpace.from_dict(TINY), TrainSettings(epochs=1, batch_size=64, train_limit=256,
                                                               val_limit=100, num_random=1, seed=seed),
                    out, data, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"), progress=False).fit()
    return out


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory, fashion_mnist):
    return _train(tmp_path_factory.mktemp("supernet") / "run", fashion_mnist, seed=3)


@pytest.mark.slow
def test_search_cli_finds_a_feasible_subnet_and_its_fitness_is_real(supernet_dir, tmp_path, fashion_mnist):
    out = tmp_path / "search"
    proc = run_cli("search", "--supernet", str(supernet_dir), "--sram", "64KB", "--flash", "1MB",
                   "--out", str(out), *SEARCH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "search.json").read_text())
    assert result["generations_done"] == 2 and len(result["population"]) >= 4
    best = result["best"]
    assert best["cost"]["sram"] <= 64 * 1024 and best["cost"]["flash"] <= 1 << 20
    # the recorded fitness is the inherited-weight validation top-1 of that subnet
    from keras_supernet.train import evaluate_subnet, load_supernet
    from common import datasets
    _, _, x_val, y_val = datasets.train_val_split(fashion_mnist.x_train, fashion_mnist.y_train)
    supernet = load_supernet(supernet_dir)
    assert evaluate_subnet(supernet, ArchConfig.from_dict(best["config"]), x_val[:120], y_val[:120]) == \
        pytest.approx(best["accuracy"])
    assert (out / "pareto.png").exists() and "best: top-1" in proc.stdout

    # running again resumes the finished search without re-evaluating anything
    again = run_cli("search", "--supernet", str(supernet_dir), "--sram", "64KB", "--flash", "1MB",
                    "--out", str(out), *SEARCH)
    assert again.returncode == 0 and json.loads((out / "search.json").read_text())["best"] == best

    # the fitness cache of this supernet is refused for another supernet
    other = _train(tmp_path / "other", fashion_mnist, seed=4)
    proc = run_cli("search", "--supernet", str(other), "--sram", "64KB", "--flash", "1MB", "--out", str(out),
                   *SEARCH)
    assert_one_line_error(proc, "another supernet")


def test_search_cli_reports_an_infeasible_budget(supernet_dir, tmp_path):
    low = smallest_achievable(SearchSpace.from_dict(TINY))
    proc = run_cli("search", "--supernet", str(supernet_dir), "--sram", str(low["sram"] - 16), "--flash", "1MB",
                   "--out", str(tmp_path / "s"))
    assert_one_line_error(proc, "smallest achievable")
    assert not (tmp_path / "s").exists()


def test_search_cli_needs_budgets(supernet_dir, tmp_path):
    proc = run_cli("search", "--supernet", str(supernet_dir), "--sram", "64KB", "--out", str(tmp_path / "s"))
    assert_one_line_error(proc, "--board")


def test_search_cli_refuses_a_board_without_budgets(supernet_dir, tmp_path):
    board = tmp_path / "board.yaml"
    board.write_text("name: bare\ncore: cortex-m7\n")
    proc = run_cli("search", "--supernet", str(supernet_dir), "--board", str(board), "--out", str(tmp_path / "s"))
    assert_one_line_error(proc, "sram")


@pytest.mark.slow
def test_search_cli_budgets_each_region_and_the_instruction_estimate(supernet_dir, tmp_path):
    cap = 10 * smallest_achievable(SearchSpace.from_dict(TINY))["instructions"]
    out = tmp_path / "search"
    proc = run_cli("search", "--supernet", str(supernet_dir), "--board", "stm32f746g-disco", "--weights-in", "external",
                   "--max-instructions", str(cap), "--out", str(out), *SEARCH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "search.json").read_text())
    assert result["budget"]["weights_in"] == "external" and result["budget"]["max_instructions_estimate"] == cap
    for entry in result["population"]:
        split = entry["flash_split"]
        assert split["weights_in"] == "external" and split["external_flash_bytes"] == entry["cost"]["model_bytes"]
        assert entry["cost"]["instructions_estimate"] <= cap
    assert "flash split: internal flash" in proc.stdout and "ESTIMATE" in proc.stdout and "not measured" in proc.stdout


@pytest.mark.slow
def test_search_cli_re_ranks_its_finalists_by_a_short_fine_tune(supernet_dir, tmp_path):
    out = tmp_path / "search"
    proc = run_cli("search", "--supernet", str(supernet_dir), "--sram", "64KB", "--flash", "1MB", "--out", str(out),
                   "--finalists", "2", "--finalist-steps", "3", *SEARCH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "search.json").read_text())
    scored = [e for e in result["population"] if e["proxy"] is not None]
    assert scored == result["population"][:2]          # the two best by inherited accuracy
    assert all(0.0 <= e["proxy"] <= 1.0 for e in scored)
    assert result["best"]["proxy"] == max(e["proxy"] for e in scored) and result["best"] in scored
    assert json.loads((out / "best_subnet.json").read_text())["arch"] == result["best"]["config"]
    assert "after the finalists' fine-tune" in proc.stdout and (out / "proxy_cache.json").exists()


def test_search_cli_refuses_finalists_without_steps(supernet_dir, tmp_path):
    proc = run_cli("search", "--supernet", str(supernet_dir), "--sram", "64KB", "--flash", "1MB",
                   "--out", str(tmp_path / "s"), "--finalists", "2", "--finalist-steps", "0", *SEARCH)
    assert_one_line_error(proc, "--finalist-steps must be at least 1")
