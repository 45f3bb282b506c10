"""TokenizerSpace: the tokenizer as a search choice. Every tokenizer is reached by sampling and
variation, a move keeps the transformer, the supernet trains every tokenizer, bad lists name the entry."""
import numpy as np
import pytest
import tensorflow as tf

from keras_supernet.arch import ArchConfig
from keras_supernet.space import SearchSpace
from keras_supernet.supernet import export_subnet
from keras_supernet.tokenizer_space import TokenizerSpace
from keras_supernet.train import SupernetTrainer, TrainSettings, evaluate_subnet
from keras_supernet.finetune import evaluate_model
from common.errors import UserError
from search import budget as budget_mod
from search.space_evolution import evolving_dimensions

PROJECT = "configs/spaces/fmnist_f746_tokenizers.yaml"
STEM = ((3, 1, 16), (3, 2, 32))
TINY = {"name": "tiny_tok", "channels": 1, "num_classes": 10, "head_dim": 8, "image_size": [28],
        "embed_dim": [16, 24], "depth": [1, 2], "num_heads": [1, 2], "mlp_ratio": [1, 2], "rank_ratio": [0.5, "full"],
        "tokenizers": [{"stem": [[3, 2, 4]], "patch_size": 2, "patch_overlap": 1}, {"patch_size": 7}]}
BLOCK_GENES = ("embed_dim", "num_heads", "mlp_ratio", "qkv_rank_ratio", "proj_rank_ratio", "fc1_rank_ratio",
               "fc2_rank_ratio")


def test_the_project_space_loads_as_three_tokenizers_over_one_transformer():
    space = SearchSpace.load(PROJECT)
    assert isinstance(space, TokenizerSpace) and len(space.branches) == 3
    assert [p.stem for p in space.branches] == [STEM, (), ()]
    assert [p.dimensions["patch_size"] for p in space.branches] == [[2], [4], [7]]
    assert space.dimensions["patch_size"] == [2, 4, 7] and space.dimensions["patch_overlap"] == [0, 1, 3]
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert space.fingerprint() == SearchSpace.load(PROJECT).fingerprint()
    assert space.fingerprint() != SearchSpace.load("configs/spaces/fmnist_f746_stem.yaml").fingerprint()
    m = space.max_dims()
    assert (m["grid"], m["channels"], m["embed_dim"], m["depth"]) == (7, 32, 96, 6)
    assert [c.grid for c in (space.largest(), space.smallest())] == [7, 4]
    assert space.largest().stem == STEM and space.smallest().stem == ()


def test_sample_mutate_crossover_reach_every_tokenizer_and_stay_inside():
    space = SearchSpace.load(PROJECT)
    rng = np.random.default_rng(0)
    sampled, children, moved = set(), set(), 0
    for _ in range(120):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(space.crossover(a, b, rng), rng)
        for c in (a, b, child):
            space.check(c)
            assert space.decode(space.encode(c)) == c
        sampled.add(space.tokenizer_index(a))
        children.add(space.tokenizer_index(child))
        mutant = space.mutate(a, rng)
        if space.tokenizer_index(mutant) != space.tokenizer_index(a):
            moved += 1
    assert sampled == children == {0, 1, 2} and moved > 10
    assert space.sample(7) == space.sample(7) and space.mutate(a, 3) == space.mutate(a, 3)


def test_a_move_to_another_tokenizer_keeps_the_transformer():
    space = SearchSpace.load(PROJECT)
    config = space.sample(np.random.default_rng(4))
    for t in range(3):
        moved = space.move(config, t, np.random.default_rng(0))
        assert space.tokenizer_index(moved) == t and moved.stem == space.branches[t].stem
        genes, before = space.encode(moved), space.encode(config)
        assert {g: genes[g] for g in BLOCK_GENES} == {g: before[g] for g in BLOCK_GENES}
        assert moved.depth == config.depth


@pytest.mark.parametrize("change, fragment", [
    ({"tokenizers": []}, "tokenizers: needs at least one"),
    ({"tokenizers": [{"patch_size": 7}, {"patch_size": [4, 7]}]}, "tokenizers 0 and 1 both hold patch_size 7"),
    ({"tokenizers": [{"patch_size": 7, "stride": 2}]}, "tokenizer 0: unknown key 'stride'"),
    ({"tokenizers": [{"stem": [[3, 2, 4]]}]}, "tokenizer 0: missing required key 'patch_size'"),
    ({"tokenizers": [{"patch_size": 5}]}, "tokenizer0.*patch_size: 5 does not tile"),
    ({"tokenizers": ["p7"]}, "tokenizer 0: must be a mapping"),
    ({"patch_size": [7]}, "unknown key 'patch_size'"),
])
def test_a_bad_tokenizer_list_is_a_user_error_naming_the_entry(change, fragment):
    with pytest.raises(UserError, match=fragment):
        SearchSpace.from_dict({**TINY, **change})


def test_a_subnet_of_no_listed_tokenizer_is_outside_the_space():
    space = SearchSpace.from_dict(TINY)
    config = space.branches[1].sample(0)                        # no stem, plain 7x7 patches
    with pytest.raises(UserError, match="tokenizer: /stem3s2c4 with patch_size 7 .* none of its tokenizers"):
        space.check(config.replace(stem=((3, 2, 4),)))
    with pytest.raises(UserError, match="tokenizer: no stem with patch_size 7 and a 9-pixel window"):
        space.check(config.replace(patch_kernel=9))


def test_shared_dimensions_evolve_and_per_tokenizer_ones_do_not():
    space = SearchSpace.from_dict(TINY)
    narrower = space.with_choices(embed_dim=[24])
    assert isinstance(narrower, TokenizerSpace) and all(p.dimensions["embed_dim"] == [24] for p in narrower.branches)
    with pytest.raises(UserError, match="patch_size belongs to each tokenizer"):
        space.with_choices(patch_size=[7])
    dims = evolving_dimensions(space)
    assert "embed_dim" in dims and "patch_size" not in dims and "patch_overlap" not in dims


def test_the_budget_floor_looks_behind_every_tokenizer():
    space = SearchSpace.from_dict(TINY)
    stems = {c.stem for c in budget_mod.uniform_subnets(space)}
    assert stems == {((3, 2, 4),), ()}
    plain = SearchSpace.from_dict({k: v for k, v in TINY.items() if k != "tokenizers"} | {"patch_size": [7]})
    assert budget_mod.smallest_achievable(space)["macs"] == budget_mod.smallest_achievable(plain)["macs"]


def test_the_supernet_trains_every_tokenizer_and_exports_each(fashion_mnist, tmp_path):
    space = SearchSpace.from_dict(TINY)
    settings = TrainSettings(epochs=1, batch_size=64, train_limit=384, val_limit=200, num_random=1, seed=3,
                             sampling="sandwich", distill=True)
    run = SupernetTrainer(space, settings, tmp_path / "sn", fashion_mnist, progress=False,
                          strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
    before = {w.name: w.numpy() for w in run.supernet.weights}
    assert np.isfinite(run.fit()[0]["train_loss"])
    for t in range(2):          # the sandwich trains the first tokenizer's largest and the last's smallest
        embed = run.supernet.tokenizer(t)[1]
        assert not np.array_equal(embed.kernel.numpy(), before[embed.kernel.name]), t
        config = space.branches[t].sample(1)
        acc = evaluate_subnet(run.supernet, config, run.x_val, run.y_val)
        assert evaluate_model(export_subnet(run.supernet, config), run.x_val, run.y_val) == acc


@pytest.mark.slow
def test_cli_tokenizer_space_trains_searches_finetunes_and_converts(tmp_path):
    """Through the pipeline's commands: the search ranks subnets of both tokenizers (its finalists
    fine-tuned from their own tokenizer's weights), and the chosen subnet converts with its stem, if any."""
    import json
    from conftest import run_cli
    from keras_supernet import static_vit
    space = tmp_path / "tok.yaml"
    space.write_text(json.dumps(TINY))
    out, model_path = tmp_path / "sn", tmp_path / "model.keras"
    limits = ["--batch-size", "64", "--train-limit", "256", "--val-limit", "200", "--min-steps", "0"]
    proc = run_cli("train-supernet", "--space", str(space), "--out", str(out), "--epochs", "1", *limits)
    assert proc.returncode == 0, proc.stderr
    search = tmp_path / "search"
    proc = run_cli("search", "--supernet", str(out), "--sram", "64KB", "--flash", "1MB", "--out", str(search),
                   "--population", "6", "--generations", "2", "--parents", "2", "--mutations", "3",
                   "--crossovers", "2", "--val-limit", "120", "--finalists", "2", "--finalist-steps", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((search / "search.json").read_text())
    loaded = SearchSpace.from_dict(result["space"])
    seen = {loaded.tokenizer_index(ArchConfig.from_dict(p["config"])) for p in result["population"]}
    assert seen == {0, 1}
    proc = run_cli("finetune", "--supernet", str(out), "--arch", str(search / "best_subnet.json"),
                   "--out", str(model_path), "--epochs", "1", *limits)
    assert proc.returncode == 0, proc.stderr
    best = static_vit.arch_from_model(static_vit.load_vit(model_path))
    proc = run_cli("convert", str(model_path), "--out", str(tmp_path / "model"), "--calib", "50", "--eval", "200",
                   "--no-baseline")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "model" / "report.json").read_text())
    embeds = [op for op in report["ops"] if op["op"] == "MCUF_PATCH_EMBED"]
    assert len(embeds) == len(best.stem) + 1
