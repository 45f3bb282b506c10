"""S3 search-space evolution: E-T error, slope fit, downhill moves, rounds, and the
three defects of MCUFormer's released code (negative score, uphill step, crash
with fewer than 5 points)."""
import json

import numpy as np
import pytest

from keras_supernet.space import FULL, SearchSpace
from common.errors import UserError
from search.budget import Budget
from search.space_evolution import (SpaceEvolution, et_error, evolve_once, fit_slope, move, score_space,
                                    slope_standard_error)
from search.fitness import FitnessCache

SPACE = "configs/spaces/fmnist.yaml"
ROOMY = Budget(sram=10 << 20, flash=100 << 20)


class WideIsBetter:
    """Accuracy rises with embed_dim and MLP ratio, falls with depth; in [0, 1]."""
    identity = "wide-is-better-v1"

    def __call__(self, configs):
        return [min(0.99, 0.3 + c.embed_dim / 200 + 0.05 * np.mean(c.mlp_hidden) / c.embed_dim - 0.03 * c.depth)
                for c in configs]


@pytest.fixture()
def space():
    return SearchSpace.load(SPACE)


def test_et_error_is_an_error_in_unit_range_never_negative():
    s = et_error([0.9, 0.8, 0.7, 0.6])
    assert s["E"] == pytest.approx(0.25) and s["T"] == pytest.approx(0.25)   # top-50 of 4 = all 4
    assert s["ET"] == pytest.approx(0.25)
    many = et_error(list(np.linspace(0.5, 0.99, 120)))
    assert many["T"] < many["E"] and many["n"] == 120
    assert et_error([])["ET"] is None
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        et_error([85.0, 90.0])           # percent instead of a fraction (a negative error in the original)


def test_slope_fit_handles_fewer_than_five_points():
    assert fit_slope([1.0], [0.2]) is None
    assert fit_slope([1.0, 1.0], [0.2, 0.3]) is None
    assert fit_slope([1.0, 2.0], [0.4, 0.2]) == pytest.approx(-0.2)
    assert fit_slope([1.0, 2.0, 3.0], [0.4, None, 0.2]) == pytest.approx(-0.1)
    assert fit_slope([32, 48, 64], [0.3, 0.2, 0.1]) == pytest.approx(-0.1 / 16)


def test_moves_go_downhill(space):
    assert move(space, "embed_dim", -0.01, 0.002) == ([48, 64, 80], "shift up")
    assert move(space, "embed_dim", +0.01, 0.002) == ([16, 32, 48], "shift down")
    assert move(space, "embed_dim", 0.00001, 0.002) == ([32, 48, 64], "keep")
    # rank ratio cannot pass 'full': shifting up shrinks instead
    new, action = move(space, "rank_ratio", -0.5, 0.002)
    assert action == "shrink up" and new == [0.5, FULL]
    # and cannot go below 0: shifting down shrinks too
    assert move(space, "rank_ratio", +0.5, 0.002) == ([0.25, 0.5], "shrink down")
    # one choice and no trend: expand to measure one next round
    single = space.with_choices(depth=[3])
    assert move(single, "depth", None, 0.002) == ([2, 3, 4], "expand")


def test_one_round_moves_the_space_toward_lower_error(space, tmp_path):
    fitness = WideIsBetter()
    cache = FitnessCache(tmp_path / "c.json", fitness.identity)
    scores = score_space(space, ROOMY, fitness, cache, samples=3, rng=np.random.default_rng(0), progress=False)
    assert scores["embed_dim"]["slope"] < 0 and scores["depth"]["slope"] > 0
    for dim in scores:
        for s in scores[dim]["scores"]:
            assert s["n"] == 3                                 # 3 < 5 points: no crash
            # top-50 of 3 subnets is all 3, and WideIsBetter's accuracies lie in [0.3, 0.99]
            assert s["T"] == pytest.approx(s["E"]) and 0.01 <= s["ET"] <= 0.7
    nxt, actions = evolve_once(space, scores, tolerance=0.002, significance=0.0)    # direction only
    assert actions["embed_dim"] == "shift up" and max(nxt.dimensions["embed_dim"]) > 64
    assert actions["depth"] == "shift down" and min(nxt.dimensions["depth"]) < 2
    _, actions = evolve_once(space, scores, tolerance=0.002)
    assert actions["embed_dim"] == "shift up"              # embed_dim's trend stands out of 3 samples' noise


def test_rounds_are_recorded_and_resume(space, tmp_path):
    calls = []

    def fitness_for(round_index, round_space):
        calls.append(round_index)
        if round_index == 1 and len(calls) == 2:
            raise KeyboardInterrupt                          # interrupted while "retraining"
        return WideIsBetter()

    evo = SpaceEvolution(space, ROOMY, fitness_for, tmp_path, rounds=3, samples=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        evo.run()
    assert len(json.loads((tmp_path / "evolve_space.json").read_text())["rounds"]) == 1
    result = SpaceEvolution(space, ROOMY, fitness_for, tmp_path, rounds=3, samples=2, progress=False).run()
    assert [r["round"] for r in result["rounds"]] == [0, 1, 2] and calls == [0, 1, 1, 2]
    for a, b in zip(result["rounds"], result["rounds"][1:]):
        assert b["space"] == a["next_space"]
    embed = [max(r["space"]["embed_dim"]) for r in result["rounds"]]
    assert embed == sorted(embed) and embed[-1] > embed[0]
    rec = result["rounds"][0]["dimensions"]["embed_dim"]
    assert set(rec) >= {"choices", "scores", "slope", "action", "next_choices"}
    assert json.loads((tmp_path / "space_final.json").read_text()) == result["final_space"]
    SearchSpace.from_dict(result["final_space"])           # a valid space file for train-supernet
    with pytest.raises(UserError, match="other settings"):
        SpaceEvolution(space, ROOMY, fitness_for, tmp_path, rounds=3, samples=5, progress=False)


def test_choices_no_feasible_subnet_can_use_are_dropped(space, tmp_path):
    fitness = WideIsBetter()
    cache = FitnessCache(tmp_path / "c.json", fitness.identity)
    from search.budget import smallest_achievable
    from memory_model.memory import evaluate
    low = smallest_achievable(space)["sram"]
    tight = Budget(sram=low + 1024, flash=100 << 20)      # just above the smallest subnet's SRAM
    scores = score_space(space, tight, fitness, cache, samples=2, rng=np.random.default_rng(0), progress=False)
    infeasible = {(dim, c) for dim, d in scores.items() for c, s in zip(d["choices"], d["scores"]) if s["n"] == 0}
    assert infeasible
    nxt, actions = evolve_once(space, scores, tolerance=0.002)
    for dim, choice in infeasible:
        assert actions[dim].startswith("drop infeasible") and choice not in nxt.dimensions[dim]
    assert evaluate(nxt.smallest()).sram <= tight.sram


def test_patch_size_shifts_to_the_next_size_that_tiles_the_image(space):
    # 4 -> 7 is a step of 3; 10 does not tile 28, 13 neither, 16 neither... 7 + 7 = 14 does
    single = space.with_choices(patch_size=[4, 7])
    new, action = move(single, "patch_size", -1.0, 0.002)
    assert action == "shift up" and new[-1] > 7 and all(28 % p == 0 for p in new)


def _scores(dim, choices, ets, ses, n=8):
    values = [float(c) for c in choices]
    return {dim: {"choices": choices, "slope": fit_slope(values, ets),
                  "slope_se": slope_standard_error(values, ets, ses),
                  "scores": [{"E": e, "T": e, "ET": e, "n": n, "se": s} for e, s in zip(ets, ses)]}}


def test_a_trend_within_its_standard_errors_does_not_move_the_space(space):
    """E-T 0.2686 vs 0.2630 for embed_dim 32 / 64 (a real round's half-point gap) moves the space
    when each mean is known to 0.001, and keeps it when the subnets scatter by 0.003 per mean."""
    choices = list(space.dimensions["embed_dim"])[:2]
    assert slope_standard_error([1.0, 3.0], [0.2, 0.1], [0.01, 0.02]) == pytest.approx(np.sqrt(0.01 ** 2 + 0.02 ** 2) / 2)
    precise = _scores("embed_dim", choices, [0.2686, 0.2630], [0.001, 0.001])
    noisy = _scores("embed_dim", choices, [0.2686, 0.2630], [0.003, 0.003])
    _, moved = evolve_once(space, precise, tolerance=0.002)
    assert moved["embed_dim"] == "shift up"
    kept, actions = evolve_once(space, noisy, tolerance=0.002)
    assert actions["embed_dim"] == "keep (trend within noise)"
    assert kept.dimensions["embed_dim"] == space.dimensions["embed_dim"]


def test_moves_that_would_leave_no_subnet_within_the_budget_are_reverted(space):
    """A clear trend toward wider embeddings, under a flash budget the wider space's smallest
    subnet cannot meet: the move is reverted and the space stays searchable."""
    from search.budget import check_feasible, smallest_achievable

    choices = list(space.dimensions["embed_dim"])
    wider, _ = evolve_once(space, _scores("embed_dim", choices, list(np.linspace(0.4, 0.2, len(choices))),
                                          [0.001] * len(choices)), tolerance=0.002)
    assert min(wider.dimensions["embed_dim"]) > min(choices)
    low = smallest_achievable(space)
    budget = Budget(sram=10 << 20, flash=low["flash"] + 64)    # only the starting space's smallest subnets fit
    with pytest.raises(UserError, match="smallest achievable"):
        check_feasible(wider, budget)
    scores = _scores("embed_dim", choices, list(np.linspace(0.4, 0.2, len(choices))), [0.001] * len(choices))
    kept, actions = evolve_once(space, scores, tolerance=0.002, budget=budget)
    assert kept.dimensions["embed_dim"] == space.dimensions["embed_dim"]
    assert actions["embed_dim"].endswith("(reverted: the evolved space would hold no subnet within the budget)")
    check_feasible(kept, budget)


def test_the_last_round_does_not_expand_a_dimension_nothing_will_measure(space, tmp_path):
    single = space.with_choices(depth=[3])
    one = SpaceEvolution(single, ROOMY, lambda r, s: WideIsBetter(), tmp_path / "one", rounds=1, samples=2,
                         progress=False).run()
    assert one["final_space"]["depth"] == [3]
    assert one["rounds"][0]["dimensions"]["depth"]["action"] == "keep"
    two = SpaceEvolution(single, ROOMY, lambda r, s: WideIsBetter(), tmp_path / "two", rounds=2, samples=2,
                         progress=False).run()
    assert two["rounds"][0]["dimensions"]["depth"]["action"] == "expand"
