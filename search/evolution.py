"""Budget-constrained evolutionary search (AutoFormer/MCUFormer style).

Population 50, 20 generations; each generation the top-10 subnets evaluated
so far are parents of 25 mutations (per-block gene prob 0.2, depth/E/resolution/
patch prob 0.4) and 25 crossovers. Every candidate must fit the budget (memory
model, `search.memory.evaluate`); fitness is top-1 with inherited supernet
weights on the validation split. The state is checkpointed after every
generation, so an interrupted search resumes where it stopped.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from keras_supernet.arch import ArchConfig
from common import atomic
from common.errors import UserError

from .budget import Budget, check_feasible, uniform_subnets
from .fitness import FitnessCache, cached_scores, config_key
from memory_model.memory import Techniques, evaluate
from .pareto import pareto_front, plot_front

STATE_FILE = "search_state.json"
RESULT_FILE = "search.json"
PLOT_FILE = "pareto.png"
BEST_FILE = "best_subnet.json"
CACHE_FILE = "fitness_cache.json"
PROXY_CACHE_FILE = "proxy_cache.json"


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 50
    generations: int = 20
    parents: int = 10
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.2
    global_mutation_prob: float = 0.4
    seed: int = 0
    max_tries: int = 5000          # candidate draws per slot before giving up on filling it

    def __post_init__(self):
        for name in ("population", "generations", "parents"):
            if getattr(self, name) < 1:
                raise UserError(f"search setting {name} must be at least 1, got {getattr(self, name)}")
        for name in ("mutation_prob", "global_mutation_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"search setting {name} must be in [0, 1], got {getattr(self, name)}")


class Search:
    """One search run in folder `out`; `run()` resumes from its state file if present."""

    def __init__(self, space, budget: Budget, fitness, out, settings: EvolutionSettings = EvolutionSettings(),
                 techniques: Techniques = Techniques(), progress: bool = True, resume: bool = True):
        self.space, self.budget, self.fitness = space, budget, fitness
        self.out, self.settings, self.techniques, self.progress = Path(out), settings, techniques, progress
        check_feasible(space, budget, techniques)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache = FitnessCache(self.out / CACHE_FILE, fitness.identity)
        self.evaluated = {}          # key -> {"config", "cost", "accuracy", "generation"}
        self.population = []
        self.generation = 0
        self.proxy = None            # {"identity", "scores": {key: score}} once finalists are re-ranked
        self.rng = np.random.default_rng(settings.seed)
        if resume:
            self._load_state()

    # ---- state ---------------------------------------------------------------------------
    def _identity(self) -> dict:
        return {"space": self.space.fingerprint(), "budget": self.budget.to_dict(),
                "settings": asdict(self.settings), "techniques": asdict(self.techniques),
                "fitness": self.fitness.identity}

    def _load_state(self) -> None:
        path = self.out / STATE_FILE
        if not path.exists():
            return
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"search state {path} is unreadable ({exc}); delete it to start over") from None
        if state.get("identity") != self._identity():
            changed = sorted(k for k, v in self._identity().items() if state.get("identity", {}).get(k) != v)
            raise UserError(f"{self.out} holds a search with a different {', '.join(changed)}; "
                            f"use another --out or --force to start over")
        self.generation = state["generation"]
        self.evaluated = {k: dict(v, config=ArchConfig.from_dict(v["config"])) for k, v in state["evaluated"].items()}
        self.population = [ArchConfig.from_dict(c) for c in state["population"]]
        self.rng.bit_generator.state = state["rng"]

    def _save_state(self) -> None:
        atomic.write_json(self.out / STATE_FILE, {
            "identity": self._identity(), "generation": self.generation,
            "evaluated": {k: dict(v, config=v["config"].to_dict()) for k, v in self.evaluated.items()},
            "population": [c.to_dict() for c in self.population], "rng": self.rng.bit_generator.state})

    # ---- candidates ------------------------------------------------------------------------
    def feasible(self, config) -> bool:
        return self.budget.admits(evaluate(config, self.techniques))

    def _initial_population(self) -> list:
        s = self.settings
        chosen, keys = [], set()
        for _ in range(s.max_tries * s.population):
            if len(chosen) == s.population:
                break
            config = self.space.sample(self.rng)
            key = config_key(config)
            if key not in keys and self.feasible(config):
                chosen.append(config)
                keys.add(key)
        if len(chosen) < s.population:
            # A tight budget: random draws rarely fit, so seed with the uniform subnets that do.
            for config in uniform_subnets(self.space):
                if len(chosen) == s.population:
                    break
                key = config_key(config)
                if key not in keys and self.feasible(config):
                    chosen.append(config)
                    keys.add(key)
        if not chosen:
            raise UserError(f"no subnet of space {self.space.name!r} meets SRAM and flash together "
                            f"({self.budget.describe()}); raise one of them")
        return chosen

    def _draw(self, make, count: int, taken: set) -> list:
        out = []
        for _ in range(self.settings.max_tries):
            if len(out) == count:
                break
            config = make()
            key = config_key(config)
            if key in taken or key in self.evaluated or not self.feasible(config):
                continue
            out.append(config)
            taken.add(key)
        return out

    def _next_population(self) -> list:
        s = self.settings
        parents = [e["config"] for e in self.ranked()[:s.parents]]
        taken = set()

        def mutant():
            parent = parents[int(self.rng.integers(len(parents)))]
            return self.space.mutate(parent, self.rng, prob=s.mutation_prob, global_prob=s.global_mutation_prob)

        def child():
            a, b = self.rng.choice(len(parents), size=2, replace=len(parents) < 2)
            return self.space.crossover(parents[int(a)], parents[int(b)], self.rng)

        return self._draw(mutant, s.mutations, taken) + self._draw(child, s.crossovers, taken)

    # ---- the loop ----------------------------------------------------------------------------
    def ranked(self) -> list:
        """Evaluated subnets, best accuracy first (ties: less SRAM, then less flash)."""
        return sorted(self.evaluated.values(),
                      key=lambda e: (-e["accuracy"], e["cost"]["sram"], e["cost"]["flash"]))

    def _evaluate(self, configs) -> None:
        scores = cached_scores(self.fitness, configs, self.cache, self.progress, desc=f"gen {self.generation}")
        for config, score in zip(configs, scores):
            key = config_key(config)
            if key not in self.evaluated:
                self.evaluated[key] = {"config": config, "accuracy": score, "generation": self.generation,
                                       "cost": evaluate(config, self.techniques).to_dict()}

    def run(self) -> dict:
        s = self.settings
        bar = tqdm(total=s.generations, initial=self.generation, desc="search", unit="gen",
                   disable=not self.progress)
        while self.generation < s.generations:
            if not self.population:
                self.population = (self._initial_population() if self.generation == 0
                                   else self._next_population())
            self._evaluate(self.population)
            self.generation += 1
            self.population = self._next_population() if self.generation < s.generations else []
            self._save_state()
            best = self.ranked()[0]
            bar.set_postfix_str(f"best {best['accuracy']:.4f} @ {best['cost']['sram'] / 1024:.0f} KiB")
            bar.update()
        bar.close()
        return self.write_results()

    def finalists(self, count: int) -> list:
        """The `count` subnets the proxy re-ranks: the best by inherited accuracy. With several tokenizers,
        round-robin over them (the best of each, in order of their best, then the second best of each...):
        inherited accuracy compares subnets that share a tokenizer's weights, not tokenizers, whose
        weights saw a share of the supernet's steps and learn at their own pace (search/README.md)."""
        by_tokenizer = {}
        for e in self.ranked():
            by_tokenizer.setdefault(self.space.tokenizer_index(e["config"]), []).append(e["config"])
        queues = list(by_tokenizer.values())        # in order of each tokenizer's best
        out = []
        while len(out) < count and any(queues):
            out += [q.pop(0) for q in queues if q][:count - len(out)]
        return out

    def rerank_finalists(self, proxy, count: int) -> dict:
        """Score the `count` finalists (`finalists`) with `proxy` (`search/proxy.py`, cached in its own
        file, so an interrupted re-ranking resumes); the winner is the finalist it scores best."""
        if self.generation < self.settings.generations:
            raise UserError("re-rank the finalists after the search has run (Search.run)")
        finalists = self.finalists(count)
        cache = FitnessCache(self.out / PROXY_CACHE_FILE, proxy.identity)
        scores = cached_scores(proxy, finalists, cache, self.progress, desc="finalists", chunk=1)
        self.proxy = {"identity": proxy.identity,
                      "scores": {config_key(c): s for c, s in zip(finalists, scores)}}
        return self.write_results()

    # ---- outputs -------------------------------------------------------------------------------
    def write_results(self) -> dict:
        entries = []
        for e in self.ranked():
            entries.append(dict(e, config=e["config"].to_dict(), describe=e["config"].describe(),
                                flash_split=self.budget.split(e["cost"]["model_bytes"]).to_dict()))
            if self.proxy:
                entries[-1]["proxy"] = self.proxy["scores"].get(config_key(e["config"]))
        front = pareto_front(entries)
        best = entries[0]
        if self.proxy:      # ties keep the better inherited accuracy (entries are in that order)
            best = max((e for e in entries if e["proxy"] is not None), key=lambda e: e["proxy"])
        result = {"space": self.space.to_dict(), "budget": self.budget.to_dict(),
                  "techniques": asdict(self.techniques), "settings": asdict(self.settings),
                  "fitness": {"identity": self.fitness.identity, "metric": "top-1 on the validation split"},
                  "generations_done": self.generation, "best": best, "pareto_front": front,
                  "finalists": self.proxy and {"identity": self.proxy["identity"], "count": len(self.proxy["scores"]),
                                                "metric": "top-1 on the validation split after a short fine-tune"},
                  "population": entries}
        atomic.write_json(self.out / RESULT_FILE, result)
        atomic.write_json(self.out / BEST_FILE, {"arch": best["config"], "accuracy": best["accuracy"],
                                                 **({"proxy": best["proxy"]} if self.proxy else {}),
                                                 "cost": best["cost"], "flash_split": best["flash_split"]})
        plot_front(entries, front, self.budget, self.out / PLOT_FILE)
        return result
