"""Evolutionary search under budgets, with a deterministic fitness (no supernet needed)."""
import json

import numpy as np
import pytest

from keras_supernet.arch import ArchConfig
from keras_supernet.space import SearchSpace
from common.errors import UserError
from common.units import format_bytes
from search.budget import Budget, smallest_achievable, uniform_subnets
from search.evolution import EvolutionSettings, Search
from search.fitness import FitnessCache, config_key
from memory_model.memory import evaluate
from search.pareto import dominates

SPACE = "configs/spaces/fmnist.yaml"
SMALL = EvolutionSettings(population=12, generations=4, parents=4, mutations=6, crossovers=6, seed=1)


class ParamsFitness:
    """Larger subnets score higher, with a bonus for mean pooling-friendly small patches."""
    identity = "params-fitness-v1"

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, configs):
        out = []
        for c in configs:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise KeyboardInterrupt
            out.append(c.params() / (c.params() + 50_000) + 0.01 * (c.patch_size == 4))
        return out


@pytest.fixture(scope="module")
def space():
    return SearchSpace.load(SPACE)


def _budget(space, fraction=0.6):
    # between the smallest and largest subnet, so the budget binds
    low = smallest_achievable(space)
    high = evaluate(space.largest())
    return Budget(sram=int(low["sram"] + fraction * (high.sram - low["sram"])),
                  flash=int(low["flash"] + fraction * (high.flash - low["flash"])))


def test_search_respects_the_budget_and_writes_its_outputs(space, tmp_path):
    budget = _budget(space)
    result = Search(space, budget, ParamsFitness(), tmp_path, SMALL, progress=False).run()
    entries = result["population"]
    assert result["generations_done"] == SMALL.generations
    assert len(entries) == len({json.dumps(e["config"], sort_keys=True) for e in entries})   # no re-evaluation
    assert len(entries) > SMALL.population
    for e in entries:
        assert e["cost"]["sram"] <= budget.sram and e["cost"]["flash"] <= budget.flash
        assert space.contains(ArchConfig.from_dict(e["config"]))
    assert result["best"]["accuracy"] == max(e["accuracy"] for e in entries)
    front = result["pareto_front"]
    assert front and all(not dominates(o, f) for f in front for o in entries)
    assert all(any(dominates(f, e) for f in front) or e in front for e in entries)
    for name in ("search.json", "best_subnet.json", "pareto.png", "fitness_cache.json", "search_state.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    best = json.loads((tmp_path / "best_subnet.json").read_text())
    assert best["arch"] == result["best"]["config"]


def test_evolution_beats_random_sampling(space, tmp_path):
    budget = _budget(space, 0.4)
    fitness = ParamsFitness()
    settings = EvolutionSettings(population=16, generations=6, parents=5, mutations=8, crossovers=8, seed=3)
    result = Search(space, budget, fitness, tmp_path, settings, progress=False).run()
    rng = np.random.default_rng(3)
    random_feasible = []
    while len(random_feasible) < len(result["population"]):
        c = space.sample(rng)
        if budget.admits(evaluate(c)):
            random_feasible.append(c)
    assert result["best"]["accuracy"] >= max(fitness(random_feasible))
    first_gen = [e["accuracy"] for e in result["population"] if e["generation"] == 0]
    assert result["best"]["accuracy"] > max(first_gen)


def test_interrupted_search_resumes_to_the_same_result(space, tmp_path):
    budget = _budget(space)
    full = Search(space, budget, ParamsFitness(), tmp_path / "full", SMALL, progress=False).run()
    with pytest.raises(KeyboardInterrupt):
        Search(space, budget, ParamsFitness(fail_after=25), tmp_path / "cut", SMALL, progress=False).run()
    state = json.loads((tmp_path / "cut" / "search_state.json").read_text())
    assert 0 < state["generation"] < SMALL.generations
    resumed = Search(space, budget, ParamsFitness(), tmp_path / "cut", SMALL, progress=False).run()
    assert resumed["best"] == full["best"]
    assert [e["config"] for e in resumed["population"]] == [e["config"] for e in full["population"]]


def test_changed_settings_refuse_to_resume(space, tmp_path):
    budget = _budget(space)
    Search(space, budget, ParamsFitness(), tmp_path, SMALL, progress=False).run()
    other = EvolutionSettings(population=12, generations=4, parents=4, mutations=6, crossovers=6, seed=2)
    with pytest.raises(UserError, match="different settings"):
        Search(space, budget, ParamsFitness(), tmp_path, other, progress=False)


def test_fitness_cache_of_another_supernet_is_refused(space, tmp_path):
    cache = FitnessCache(tmp_path / "fitness_cache.json", "supernet-A")
    cache.scores[config_key(space.smallest())] = 0.5
    cache.save()
    assert FitnessCache(tmp_path / "fitness_cache.json", "supernet-A").scores
    with pytest.raises(UserError, match="another supernet"):
        FitnessCache(tmp_path / "fitness_cache.json", "supernet-B")


def test_infeasible_budget_names_the_smallest_achievable(space, tmp_path):
    low = smallest_achievable(space)
    with pytest.raises(UserError, match="smallest achievable") as err:
        Search(space, Budget(sram=low["sram"] - 16, flash=10 << 20), ParamsFitness(), tmp_path, SMALL)
    assert format_bytes(low["sram"]) in str(err.value)
    # the smallest achievable values are really achieved by some subnet, and no sample beats them
    assert any(evaluate(c).sram == low["sram"] for c in uniform_subnets(space))
    rng = np.random.default_rng(0)
    assert all(evaluate(space.sample(rng)).sram >= low["sram"] for _ in range(500))


def test_budget_from_board_and_flags():
    b = Budget.from_args(board="stm32f746")
    assert (b.sram, b.flash) == (320 * 1024, 1024 * 1024)
    assert Budget.from_args(board="stm32f746", sram="64KB").sram == 64 * 1024
    with pytest.raises(UserError):
        Budget.from_args(sram="64KB")


class SmallFirstProxy:
    """Disagrees with ParamsFitness: fewer parameters score higher."""
    identity = "small-first-proxy-v1"

    def __init__(self):
        self.scored = []

    def __call__(self, configs):
        self.scored += [config_key(c) for c in configs]
        return [1.0 - c.params() / 1e6 for c in configs]


def test_finalists_are_re_ranked_by_the_proxy(space, tmp_path):
    budget = _budget(space)
    search = Search(space, budget, ParamsFitness(), tmp_path, SMALL, progress=False)
    with pytest.raises(UserError, match="after the search has run"):
        search.rerank_finalists(SmallFirstProxy(), 4)
    by_inherited = search.run()["population"]
    proxy = SmallFirstProxy()
    result = search.rerank_finalists(proxy, 4)
    finalists = by_inherited[:4]
    assert proxy.scored == [config_key(ArchConfig.from_dict(e["config"])) for e in finalists]
    smallest = min(finalists, key=lambda e: ArchConfig.from_dict(e["config"]).params())
    assert result["best"]["config"] == smallest["config"] != by_inherited[0]["config"]
    assert result["best"]["proxy"] == pytest.approx(1.0 - ArchConfig.from_dict(smallest["config"]).params() / 1e6)
    assert sum(e["proxy"] is not None for e in result["population"]) == 4
    best = json.loads((tmp_path / "best_subnet.json").read_text())
    assert best["arch"] == smallest["config"] and best["proxy"] == result["best"]["proxy"]
    # scores are cached: a second re-ranking (e.g. after an interruption) trains nothing again
    again = SmallFirstProxy()
    assert search.rerank_finalists(again, 4)["best"] == result["best"] and again.scored == []


def test_finalists_come_round_robin_from_every_tokenizer(tmp_path):
    """Inherited accuracy ranks within a tokenizer: the finalists are the best of each tokenizer (in
    order of their best), then the second best of each, so a tokenizer the supernet favours early
    cannot fill the re-ranking alone."""
    space = SearchSpace.load("configs/spaces/fmnist_f746_tokenizers.yaml")

    class FewTokensFirst(ParamsFitness):          # 16-token subnets score highest, the stem's lowest
        def __call__(self, configs):
            bonus = {0: 0.0, 1: 0.5, 2: 1.0}
            return [s + bonus[space.tokenizer_index(c)] for c, s in zip(configs, super().__call__(configs))]

    search = Search(space, Budget(sram=320 * 1024, flash=1 << 20, max_macs=15_000_000), FewTokensFirst(), tmp_path,
                    EvolutionSettings(population=16, generations=3, parents=4, mutations=8, crossovers=8, seed=2),
                    progress=False)
    ranked = [ArchConfig.from_dict(e["config"]) for e in search.run()["population"]]
    assert space.tokenizer_index(ranked[0]) == 2 and space.tokenizer_index(ranked[4]) == 2
    finalists = search.finalists(5)
    per_tokenizer = {t: [c for c in ranked if space.tokenizer_index(c) == t] for t in range(3)}
    assert finalists == [per_tokenizer[2][0], per_tokenizer[1][0], per_tokenizer[0][0],
                         per_tokenizer[2][1], per_tokenizer[1][1]]
    plain = Search(SearchSpace.load(SPACE), _budget(SearchSpace.load(SPACE)), ParamsFitness(), tmp_path / "p", SMALL,
                   progress=False)
    best_three = [ArchConfig.from_dict(e["config"]) for e in plain.run()["population"][:3]]
    assert plain.finalists(3) == best_three
