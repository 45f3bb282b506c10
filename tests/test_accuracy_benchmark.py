"""benchmarks/accuracy_fmnist.py's summary: a winner is compared only with the random subnets of the
same budget and the same final training (teacher or not, --tag)."""
import json

import pytest

from tests.benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("accuracy_fmnist")


def model(int8, float_=None, inherited=None, tuned=None, proxy=None):
    record = {"int8_top1": int8, "float_top1": int8 if float_ is None else float_}
    if inherited is not None:
        record.update(val_inherited=inherited, val_finetuned=tuned)
    if proxy is not None:
        record["val_proxy"] = proxy
    return record


def test_winner_is_compared_within_its_final_training(bench):
    results = {
        "f746_15m/winner_kd": model(0.89),
        "f746_15m/winner_kd_5ep": model(0.87, 0.875, inherited=0.76, tuned=0.88, proxy=0.83),
        "f746_15m/random_0_kd_5ep": model(0.86, inherited=0.70, tuned=0.87, proxy=0.82),
        "f746_15m/random_1_kd_5ep": model(0.85, inherited=0.72, tuned=0.86, proxy=0.81),
        "f746_15m/random_0_kd": model(0.50),          # another final training: not in the 5-epoch mean
        "mcu_64k/winner": model(0.80),
    }
    summary = bench.summarize(results)
    five = summary["f746_15m_kd_5ep"]
    assert five["random_count"] == 2
    assert five["random_int8_mean"] == pytest.approx(0.855)
    assert five["winner_minus_random_mean"] == pytest.approx(0.015)
    assert five["int8_minus_float"] == pytest.approx(-0.005)
    # inherited: winner > random_1 > random_0; final: winner > random_0 > random_1 (2 pairs agree, 1 not)
    assert five["kendall_tau_inherited_vs_final_val"] == pytest.approx(1 / 3)
    assert five["kendall_tau_proxy_vs_final_val"] == pytest.approx(1.0)     # the same order as the final
    assert summary["f746_15m_kd"]["random_count"] == 1
    assert summary["f746_15m_kd"]["random_int8_mean"] == pytest.approx(0.50)
    assert "random_count" not in summary["mcu_64k"]


def stage_names(bench, argv):
    runner = object.__new__(bench.Bench)
    runner.args = bench.parse_args(argv)
    return [name for name, _ in runner.stages()]


def test_tag_names_the_budget_stages(bench):
    names = stage_names(bench, ["--tag", "_5ep", "--budgets", "f746_15m", "--randoms", "1"])
    assert "f746_15m/winner_kd_cnn4_5ep" in names and "f746_15m/random_0_kd_cnn4_5ep" in names
    assert "cnn_full" in names          # the CNN and small-data stages keep their names


def test_another_finetune_seed_is_a_stage_of_its_own_and_reaches_finetune(bench, tmp_path):
    names = stage_names(bench, ["--tag", "_50ep", "--finetune-seed", "1", "--budgets", "f746_15m", "--randoms", "1"])
    assert "f746_15m/winner_kd_cnn4_50ep_seed1" in names and "f746_15m/random_0_kd_cnn4_50ep_seed1" in names
    assert "f746_15m/winner_kd_cnn4_50ep" in stage_names(bench, ["--tag", "_50ep", "--budgets", "f746_15m"])
    runner = object.__new__(bench.Bench)
    runner.teacher = lambda stage, *a: tmp_path / stage / "teacher.keras"
    runner.args = bench.parse_args(["--finetune-seed", "1"])
    flags = runner.budget_finetune_flags()
    assert flags[flags.index("--seed") + 1] == "1"
    runner.args = bench.parse_args([])
    assert "--seed" not in runner.budget_finetune_flags()


def test_the_conversions_choose_their_ranges_on_validation_and_say_so(bench, tmp_path):
    assert bench.parse_args([]).range == "auto"
    arch = {"image_size": 28, "channels": 1, "patch_size": 7, "embed_dim": 16, "num_classes": 10, "num_heads": [1],
            "qkv_dim": [16], "mlp_hidden": [32]}
    report = {"arch": arch, "float_accuracy": 0.8, "int8_accuracy": 0.79, "flash_bytes": 1000}
    for quantization, ranges in [({"method": "percentile", "percentile": 99.99}, "percentile 99.99"),
                                 ({}, "percentile 99.9"),       # rows converted before --range auto existed
                                 ({"method": "minmax", "percentile": 99.9, "range_choice": {}}, "auto: minmax")]:
        (tmp_path / "report.json").write_text(json.dumps({**report, "quantization": quantization}))
        assert bench.model_record(tmp_path)["int8_ranges"] == ranges


def test_the_teacher_names_the_final_trainings(bench):
    names = stage_names(bench, ["--budgets", "mcu_64k", "--randoms", "1"])
    assert names.index("teacher_cnn4") < names.index("mcu_64k/winner_kd_cnn4")
    assert "mcu_64k/random_0_kd_cnn4" in names
    reference = stage_names(bench, ["--budgets", "mcu_64k", "--randoms", "1", "--teacher", "cnn2"])
    assert "mcu_64k/winner_kd" in reference and "teacher_cnn4" not in reference
    plain = stage_names(bench, ["--budgets", "mcu_64k", "--randoms", "1", "--no-distill"])
    assert "mcu_64k/winner" in plain and "teacher_cnn4" not in plain


def test_evolved_space_is_compared_with_the_winner_of_its_teacher(bench):
    space = {"budget": "mcu_64k"}
    for teacher, start in ((False, "mcu_64k/winner"), (True, "mcu_64k/winner_kd"), ("cnn2", "mcu_64k/winner_kd"),
                           ("cnn4", "mcu_64k/winner_kd_cnn4")):
        results = {"mcu_64k/winner": model(0.80), "mcu_64k/winner_kd": model(0.85),
                   "mcu_64k/winner_kd_cnn4": model(0.90), "evolve/space": space,
                   "evolve/winner": {**model(0.86), "teacher": teacher}}
        evolve = bench.summarize(results)["evolve"]
        assert evolve["start_space_winner_int8"] == results[start]["int8_top1"], teacher


def test_verify_tflm_without_a_tree_is_one_line(bench, tmp_path, monkeypatch):
    from common.errors import UserError

    monkeypatch.setattr("deploy.tflm.find_tflm", lambda: None)
    args = bench.parse_args(["--work", str(tmp_path / "work"), "--results", str(tmp_path / "a.json"), "--verify-tflm"])
    with pytest.raises(UserError, match="--verify-tflm needs TFLM: no TFLM tree.*make tflm"):
        bench.Bench(args).verify_tflm()
    assert not (tmp_path / "a.json").exists()


def test_a_fresh_work_folder_keeps_the_published_rows(bench, tmp_path):
    """A new machine (no state.json) adds its stages to the results document instead of rewriting it."""
    import json

    doc = tmp_path / "a.json"
    sized = {"flash_model_bytes": 200_000, "macs": 8_000_000}
    doc.write_text(json.dumps({"results": {"mcu_64k/winner": {**model(0.80), **sized}}}))
    args = bench.parse_args(["--work", str(tmp_path / "work"), "--results", str(doc)])
    runner = bench.Bench(args)
    runner._merge("mcu_64k/winner_kd_cnn4", {**model(0.90), **sized})
    results = json.loads(doc.read_text())["results"]
    assert set(results) == {"mcu_64k/winner", "mcu_64k/winner_kd_cnn4"}
    assert results["mcu_64k/winner"]["int8_top1"] == 0.80


def test_a_trial_in_the_same_work_folder_neither_drops_nor_leaks_rows(bench, tmp_path):
    """A --results trial run in the work folder first; the published document, run next, keeps its rows
    and gains only its own stage; a row it gains later (another machine's, pulled) survives the next stage."""
    import json

    sized = {"flash_model_bytes": 200_000, "macs": 8_000_000}
    doc, trial = tmp_path / "a.json", tmp_path / "trial.json"
    doc.write_text(json.dumps({"results": {"mcu_64k/winner": {**model(0.80), **sized}}}))
    work = ["--work", str(tmp_path / "work")]
    bench.Bench(bench.parse_args([*work, "--results", str(trial)]))._merge("teacher_cnn4", {"test_top1": 0.9})
    bench.Bench(bench.parse_args([*work, "--results", str(doc)]))._merge("mcu_64k/random_0", {**model(0.7), **sized})
    assert set(json.loads(doc.read_text())["results"]) == {"mcu_64k/winner", "mcu_64k/random_0"}
    assert set(json.loads(trial.read_text())["results"]) == {"teacher_cnn4"}

    pulled = json.loads(doc.read_text())
    pulled["results"]["mcu_64k/random_1"] = {**model(0.75), **sized}
    doc.write_text(json.dumps(pulled))
    bench.Bench(bench.parse_args([*work, "--results", str(doc)]))._merge("mcu_64k/random_2", {**model(0.7), **sized})
    assert set(json.loads(doc.read_text())["results"]) == {"mcu_64k/winner", "mcu_64k/random_0",
                                                          "mcu_64k/random_1", "mcu_64k/random_2"}


def test_a_results_file_of_another_kind_is_one_line(bench, tmp_path):
    from common.errors import UserError

    doc = tmp_path / "a.json"
    doc.write_text("[1, 2]")
    args = bench.parse_args(["--work", str(tmp_path / "work"), "--results", str(doc)])
    with pytest.raises(UserError, match="not a results document.*--results"):
        bench.Bench(args)
    assert doc.read_text() == "[1, 2]"


def test_the_budgets_recipe_flags_reach_finetune(bench, tmp_path):
    runner = object.__new__(bench.Bench)
    runner.args = bench.parse_args(["--teacher-weight", "0.9", "--ema", "0.999", "--erase", "0.5"])
    runner.teacher = lambda stage, *a: tmp_path / stage / "teacher.keras"
    flags = runner.budget_finetune_flags()
    assert flags[flags.index("--teacher-weight") + 1] == "0.9"
    assert flags[flags.index("--teacher") + 1].endswith("teacher_cnn4/teacher.keras")
    assert flags[flags.index("--ema") + 1] == "0.999"
    assert flags[flags.index("--erase") + 1] == "0.5"
    runner.args = bench.parse_args(["--no-distill"])
    assert runner.budget_finetune_flags() == []


def test_winner_from_reuses_the_recorded_subnet(bench, tmp_path):
    import json

    from common.errors import UserError
    from keras_supernet.arch import ArchConfig

    config = ArchConfig(image_size=28, channels=1, patch_size=4, embed_dim=48, num_classes=10, num_heads=[2, 3],
                        qkv_dim=[32, 48], mlp_hidden=[96, 144], qkv_rank=[0, 16], proj_rank=[16, 0],
                        fc1_rank=[0, 0], fc2_rank=[32, 0], pool="mean", patch_kernel=7)
    doc = tmp_path / "a.json"
    doc.write_text(json.dumps({"results": {"f746_15m/winner_kd_cnn4_50ep": {"config": config.to_dict()}}}))
    argv = ["--work", str(tmp_path / "work"), "--results", str(doc), "--winner-from", "_kd_cnn4_50ep"]
    runner = bench.Bench(bench.parse_args(argv))
    arch = runner.recorded_winner(runner.winner_stage("f746_15m"))
    assert ArchConfig.from_dict(json.loads(arch.read_text())) == config
    with pytest.raises(UserError, match="--winner-from: no finished stage mcu_64k/winner_kd_cnn4_50ep"):
        runner.recorded_winner(runner.winner_stage("mcu_64k"))


def test_a_longer_trained_teacher_is_its_own_stage(bench):
    names = stage_names(bench, ["--budgets", "mcu_64k", "--randoms", "0", "--teacher-epochs", "40"])
    assert "teacher_cnn4_40ep" in names and "teacher_cnn4" not in names
    assert "teacher_cnn4" in stage_names(bench, ["--budgets", "mcu_64k", "--randoms", "0"])


def test_finalists_re_rank_in_a_search_folder_of_their_own(bench, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "mcuformer", lambda argv, work, stage: calls.append((argv, stage)))
    runner = object.__new__(bench.Bench)
    runner.work, runner.data_flags = tmp_path, []
    runner.args = bench.parse_args(["--finalists", "4", "--finalist-steps", "300"])
    best = runner.search("f746_15m/search", tmp_path / "supernet", [], 2000)
    argv, stage = calls[-1]
    assert best == tmp_path / "f746_15m/search_fin4x300" / "best_subnet.json" and stage == "f746_15m/search_fin4x300"
    assert argv[argv.index("--finalists") + 1] == "4" and argv[argv.index("--finalist-steps") + 1] == "300"
    runner.args = bench.parse_args([])
    assert runner.search("f746_15m/search", tmp_path / "supernet", [], 2000).parent.name == "search"
    assert "--finalists" not in calls[-1][0]


@pytest.mark.parametrize("flags", [["--erase", "2"], ["--ema", "1"], ["--teacher-weight", "-0.5"]])
def test_a_bad_final_training_value_is_refused_before_any_stage(bench, flags):
    from common.errors import UserError

    with pytest.raises(UserError, match="training settings"):
        bench.parse_args(flags)


def test_the_supernet_and_its_search_are_named_by_how_the_supernet_trained(bench, tmp_path):
    """--supernet-epochs 10 must not reuse a finished 2-epoch supernet, nor the search made on it."""
    def folders(argv):
        runner = object.__new__(bench.Bench)
        runner.args, runner.work, runner.state = bench.parse_args(["--no-distill", *argv]), tmp_path, {"results": {}}
        seen = {}
        runner.supernet = lambda name, *a: seen.setdefault("supernet", tmp_path / name)
        runner.search = lambda name, *a: seen.setdefault("search", name)
        runner.final_model = lambda *a: {}
        runner.record = lambda stage, result, started: seen.setdefault("result", result)
        runner.budget_stage("f746_15m", "winner")
        return seen

    two = folders(["--supernet-epochs", "2", "--supernet-sampling", "uniform"])
    assert two["supernet"].name == "supernet_fmnist_f746_2ep_uniform" and two["search"] == "f746_15m/search_2ep_uniform"
    assert two["result"]["supernet"] == "supernet_fmnist_f746_2ep_uniform"
    ten = folders(["--supernet-epochs", "10", "--supernet-sampling", "uniform", "--supernet-lr", "0.004"])
    assert ten["supernet"].name == "supernet_fmnist_f746_10ep_uniform_lr0.004"
    assert ten["search"] == "f746_15m/search_10ep_uniform_lr0.004"


@pytest.mark.parametrize("flags", [["--supernet-epochs", "0"], ["--supernet-lr", "0"]])
def test_a_bad_supernet_setting_is_refused_before_any_stage(bench, flags, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(flags)
    assert "--supernet-epochs must be at least 1" in capsys.readouterr().err


def test_the_small_data_and_evolve_folders_are_named_by_their_training(bench, tmp_path):
    """Another --small-images, step floor or evolve-space setting gets its own supernet and search,
    never a finished one trained otherwise."""
    def folders(argv):
        runner = object.__new__(bench.Bench)
        runner.args, runner.work = bench.parse_args(["--supernet-epochs", "2", *argv]), tmp_path
        return runner.small_data_folder(), runner.evolve_folder()

    small, evolve = folders([])
    assert small.startswith("small_data/") and evolve.startswith("evolve/")
    assert folders(["--small-images", "1000"])[0] != small
    assert folders(["--min-steps", "3000"])[0] != small
    assert folders(["--supernet-epochs", "6"]) != (small, evolve)
    assert folders(["--evolve-rounds", "3"])[1] != evolve
    assert folders(["--evolve-budget", "f746_15m"])[1] != evolve


def test_the_wide_space_admits_subnets_of_both_token_grids_under_the_f746_budget(bench):
    """f746_15m_wide searches patch size and tokenizer window: its feasible subnets differ in token
    grid, which fmnist_f746's do not."""
    space, flags, _ = bench.BUDGETS["f746_15m_wide"]
    grids = {bench.random_feasible(space, flags, seed).patch_size for seed in range(6)}
    assert grids == {4, 7}
    assert {bench.random_feasible("fmnist_f746", flags, seed).patch_size for seed in range(6)} == {4}


def test_the_stem_space_gives_every_feasible_subnet_its_stem_under_the_f746_budget(bench):
    """f746_15m_stem: the fixed stem in every feasible subnet, its 49 tokens from the 14 x 14 map, and the
    subnet, stem included, within the MAC cap and the board (memory_model evaluates every op)."""
    from memory_model.memory import evaluate

    space, flags, _ = bench.BUDGETS["f746_15m_stem"]
    for seed in range(4):
        config = bench.random_feasible(space, flags, seed)
        assert config.stem == ((3, 1, 16), (3, 2, 32)) and config.num_tokens == 49
        cost = evaluate(config)
        assert cost.macs <= 15_000_000 and cost.sram <= 320 * 1024 and cost.flash <= 1024 * 1024
        assert config.layer_macs()["stem1"] == 14 * 14 * 9 * 16 * 32


def test_the_readme_headline_names_the_other_seeds_of_the_row_that_meets_a_target():
    table = load_benchmark("make_table")
    summary = {"f746_15m_kd_cnn4_50ep": {"winner_int8": 0.9219},
               "f746_15m_stem_kd_cnn4_50ep": {"winner_int8": 0.9271},
               "f746_15m_stem_kd_cnn4_50ep_seed1": {"winner_int8": 0.9243},
               "f746_15m_stem_kd_cnn4_12ep": {"winner_int8": 0.8975}}
    status = table.target_status({"summary": summary})
    assert ("f746_15m target 92.50% met by f746_15m_stem_kd_cnn4_50ep (92.71%) "
            "(the same training with another seed: 92.43%)") in status
    del summary["f746_15m_stem_kd_cnn4_50ep_seed1"]
    assert "another seed" not in table.target_status({"summary": summary})


def test_the_readme_headline_gives_every_measured_search_gain_against_its_target():
    table = load_benchmark("make_table")
    summary = {"f746_15m_stem_kd_cnn4_12ep": {"winner_int8": 0.8975, "random_int8_mean": 0.9053,
                                              "winner_minus_random_mean": -0.0078},
               "f746_15m_tokenizers_kd_cnn4_12ep": {"winner_int8": 0.9021, "random_int8_mean": 0.8880,
                                                    "winner_minus_random_mean": 0.0141},
               "f746_15m_tokenizers_kd_cnn4_12ep_seed1": {"winner_int8": 0.8993},
               "f746_15m_stem_kd_cnn4_50ep": {"winner_int8": 0.9271}}
    status = table.search_gain_status({"summary": summary})
    assert status == ("winner - random mean target +1.00 points met by f746_15m_tokenizers_kd_cnn4_12ep "
                      "(f746_15m_tokenizers_kd_cnn4_12ep +1.41 points (its winner trained with another seed: "
                      "+1.13 points), f746_15m_stem_kd_cnn4_12ep -0.78 points)")
    del summary["f746_15m_tokenizers_kd_cnn4_12ep"]
    assert table.search_gain_status({"summary": summary}).startswith("winner - random mean target +1.00 points not met")
    assert table.search_gain_status({"summary": {}}) == "winner - random mean not measured"
