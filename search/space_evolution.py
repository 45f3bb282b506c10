"""S3-style search-space evolution guided by E-T error (AutoFormer-V2 / MCUFormer).

For every searchable dimension and each of its choices: sample N random
budget-feasible subnets of the sub-space where that dimension takes that
choice (per-block dimensions: in every block), score them, and take
    E-T error = (mean error of the N + mean error of the best min(50, N)) / 2,
errors being 1 - top-1 in [0, 1]. A least-squares line of E-T error against the
choice values gives the dimension's slope; the dimension then moves one step
downhill (against the slope): shift (drop the uphill end, add a value past the
downhill end), shrink (drop the uphill end when the downhill end is at its legal
limit) or, when the trend is flat, keep; a dimension left with one choice is
expanded by one step on each side so the next round can measure a trend.

Signal, not noise: a trend counts only when the slope exceeds `SIGNIFICANCE` times
its standard error, propagated from each choice's standard error of the mean over
its sampled subnets (undertrained small subnets scattering by a point must not move
a space). And the evolved space must still hold a subnet within the budget: moves
that would leave none are reverted, weakest evidence first.

Fixed defects of MCUFormer's released code: errors are checked to lie in [0, 1]
(its score came out negative), the step is taken against the slope (it moved
uphill), and fewer than 5 (even 1) explored points never crash the fit.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from keras_supernet.space import BLOCK_DIMS, DIMENSIONS, FULL, OPTIONAL_DIMS, SearchSpace
from common import atomic
from common.errors import UserError

from .budget import Budget, check_feasible
from .fitness import FitnessCache, cached_scores
from memory_model.memory import Techniques, evaluate

# One step of each dimension when its choices do not give a spacing.
DEFAULT_STEPS = {"image_size": 4, "patch_size": 1, "patch_overlap": 1, "embed_dim": 16, "depth": 1, "num_heads": 1,
                 "mlp_ratio": 0.5, "rank_ratio": 0.25}
TOP_TIER = 50
SIGNIFICANCE = 2.0      # a slope counts as a trend beyond this many standard errors


def choice_value(dim: str, choice) -> float:
    """Numeric value of a choice for the fit (rank 'full' = ratio 1)."""
    return 1.0 if choice == FULL else float(choice)


def sample_subspace(space: SearchSpace, dim: str, choice, budget: Budget, n: int, rng,
                    techniques: Techniques = Techniques(), max_tries: int = 200) -> list:
    """Up to `n` distinct budget-feasible random subnets with `dim` fixed to `choice`."""
    sub = space.with_choices(**{dim: [choice]}) if _valid(space, dim, [choice]) else None
    if sub is None:
        return []
    out, seen = [], set()
    for _ in range(max_tries * n):
        if len(out) == n:
            break
        config = sub.sample(rng)
        key = repr(config.to_dict())
        if key not in seen and budget.admits(evaluate(config, techniques)):
            seen.add(key)
            out.append(config)
    return out


def _valid(space, dim, choices) -> bool:
    try:
        space.with_choices(**{dim: choices})
    except UserError:
        return False
    return True


def et_error(accuracies) -> dict:
    """{'E', 'T', 'ET', 'n', 'se'} of one choice's sampled subnets (None when there are none);
    `se` is the standard error of the mean error (None below 2 subnets)."""
    acc = np.asarray(accuracies, np.float64)
    if acc.size == 0:
        return {"E": None, "T": None, "ET": None, "n": 0, "se": None}
    if np.any(acc < 0) or np.any(acc > 1):
        raise UserError(f"fitness must be a top-1 fraction in [0, 1], got {acc.min():.4g}..{acc.max():.4g}")
    errors = 1.0 - acc
    top = np.sort(errors)[:min(TOP_TIER, errors.size)]
    e, t = float(errors.mean()), float(top.mean())
    se = float(errors.std(ddof=1) / np.sqrt(errors.size)) if errors.size > 1 else None
    return {"E": e, "T": t, "ET": (e + t) / 2.0, "n": int(errors.size), "se": se}


def fit_slope(values, errors) -> float | None:
    """Least-squares slope of E-T error against choice value; None with < 2 distinct values."""
    pts = [(float(v), float(e)) for v, e in zip(values, errors) if e is not None]
    xs = np.array([p[0] for p in pts])
    if len(pts) < 2 or np.ptp(xs) == 0:
        return None
    ys = np.array([p[1] for p in pts])
    xc = xs - xs.mean()
    return float((xc * (ys - ys.mean())).sum() / (xc * xc).sum())


def slope_standard_error(values, errors, ses) -> float | None:
    """Standard error of `fit_slope`'s slope from each point's standard error (None when a
    point has none or the fit has none)."""
    pts = [(float(v), s) for v, e, s in zip(values, errors, ses) if e is not None]
    xs = np.array([p[0] for p in pts])
    if len(pts) < 2 or np.ptp(xs) == 0 or any(p[1] is None for p in pts):
        return None
    xc = xs - xs.mean()
    return float(np.sqrt((xc ** 2 * np.array([p[1] for p in pts]) ** 2).sum()) / (xc * xc).sum())


def trend(record: dict, significance: float = SIGNIFICANCE) -> float | None:
    """The slope a move follows: 0 (no trend) when it lies within `significance` standard errors."""
    slope = record["slope"]
    return 0.0 if slope and record.get("slope_se") and _evidence(record) <= significance else slope


def _step(dim: str, values: list) -> float:
    numeric = sorted(choice_value(dim, v) for v in values)
    gaps = [b - a for a, b in zip(numeric, numeric[1:]) if b > a]
    return min(gaps) if gaps else DEFAULT_STEPS[dim]


def _as_choice(dim: str, value: float):
    if dim == "rank_ratio":
        return FULL if value >= 1.0 - 1e-9 else round(value, 4)
    if dim == "mlp_ratio":
        return round(value, 4)
    return int(round(value))


def _legal(dim: str, value: float) -> bool:
    if dim == "rank_ratio":
        return 0.0 < value <= 1.0 + 1e-9
    return value >= 0 if dim == "patch_overlap" else value > 0


def _ahead(space, dim, values, step, up) -> list:
    """Candidate values past the downhill end, nearest first: patch sizes that tile an
    image size, otherwise the end plus 1..8 steps."""
    if dim == "patch_size":
        images = space.dimensions["image_size"]
        tiling = [p for p in range(1, max(images) + 1) if any(s % p == 0 for s in images)]
        return [p for p in tiling if p > values[-1]] if up else [p for p in reversed(tiling) if p < values[0]]
    return [values[-1] + k * step if up else values[0] - k * step for k in range(1, 9)]


def move(space: SearchSpace, dim: str, slope: float | None, tolerance: float, exclude=(), explore: bool = True) -> tuple:
    """(new choices, action) for one dimension: one step against the slope.

    `tolerance`: the smallest change of E-T error over one step that counts as a trend;
    `exclude`: choices known to admit no feasible subnet, never added back;
    `explore`: a single choice without a trend is expanded (off in the last round: nothing
    would measure the expansion).
    """
    choices = list(space.dimensions[dim])
    step = _step(dim, choices)
    values = sorted(choice_value(dim, c) for c in choices)
    slope = None if slope is None else (0.0 if abs(slope * step) <= tolerance else slope)

    def try_values(new_values):
        new = sorted({_as_choice(dim, v) for v in new_values if _legal(dim, v)} - set(exclude),
                     key=lambda c: choice_value(dim, c))
        return new if new and _valid(space, dim, new) else None

    if len(choices) == 1 and not slope and explore:
        grown = try_values([values[0] - step, values[0], values[0] + step])
        return (grown, "expand") if grown and len(grown) > 1 else (choices, "keep")
    if not slope:
        return choices, "keep"
    # Downhill: error falls as the value rises when the slope is negative.
    up = slope < 0
    kept = values[1:] if up else values[:-1]
    for ahead in _ahead(space, dim, values, step, up):
        shifted = try_values(kept + [ahead]) if _legal(dim, ahead) else None
        if shifted and len(shifted) == len(choices):
            return shifted, "shift up" if up else "shift down"
    if len(choices) > 1:
        shrunk = try_values(kept)
        if shrunk:
            return shrunk, "shrink up" if up else "shrink down"
    return choices, "keep"


def score_space(space: SearchSpace, budget: Budget, fitness, cache, samples: int, rng,
                techniques: Techniques = Techniques(), progress: bool = False) -> dict:
    """{dim: {"choices": [...], "scores": [...], "slope": s}} for every searchable dimension."""
    out = {}
    for dim in evolving_dimensions(space):
        choices = list(space.dimensions[dim])
        scores = []
        for choice in choices:
            configs = sample_subspace(space, dim, choice, budget, samples, rng, techniques)
            acc = cached_scores(fitness, configs, cache, progress, desc=f"{dim}={choice}") if configs else []
            scores.append(et_error(acc))
        values, ets = [choice_value(dim, c) for c in choices], [s["ET"] for s in scores]
        out[dim] = {"choices": choices, "scores": scores, "slope": fit_slope(values, ets),
                    "slope_se": slope_standard_error(values, ets, [s["se"] for s in scores]),
                    "per_block": dim in BLOCK_DIMS}
    return out


def evolving_dimensions(space: SearchSpace) -> list:
    """Every dimension, except an optional one the space leaves at its default (a fixed
    `patch_overlap` [0]: evolution does not switch the convolutional tokenizer on by itself) and
    those that belong to one of a TokenizerSpace's tokenizers."""
    return [d for d in DIMENSIONS if d not in space.PER_TOKENIZER
            and (d not in OPTIONAL_DIMS or space.dimensions[d] != OPTIONAL_DIMS[d])]


def evolve_once(space: SearchSpace, scores: dict, tolerance: float, dims=None, budget: Budget | None = None,
                significance: float = SIGNIFICANCE, explore: bool = True) -> tuple:
    """(next space, {dim: action}) from one round's scores; with `budget`, moves that would leave
    the space no subnet within it are reverted (the least significant first); `explore` as in `move`."""
    changes, actions = {}, {}
    for dim in dims or list(scores):
        # Choices no feasible subnet can use are dropped first.
        feasible = [c for c, s in zip(scores[dim]["choices"], scores[dim]["scores"]) if s["n"] > 0]
        if not feasible:
            raise UserError(f"no budget-feasible subnet uses any {dim} choice; raise the budget")
        current = space.with_choices(**{dim: feasible}) if feasible != scores[dim]["choices"] else space
        dropped = [c for c in scores[dim]["choices"] if c not in feasible]
        slope = trend(scores[dim], significance)
        new, action = move(current, dim, slope, tolerance, exclude=dropped, explore=explore)
        if slope == 0.0 and scores[dim]["slope"] and action == "keep":
            action = "keep (trend within noise)"
        if feasible != scores[dim]["choices"]:
            action = f"drop infeasible, {action}"
        changes[dim], actions[dim] = new, action
    next_space = space
    # Dropping infeasible choices is a constraint: apply those first, then the moves,
    # one at a time so that tiling (image size vs patch size) is checked against the others.
    for dim in sorted(changes, key=lambda d: not actions[d].startswith("drop")):
        if _valid(next_space, dim, changes[dim]):
            next_space = next_space.with_choices(**{dim: changes[dim]})
        else:
            actions[dim] += " (reverted: invalid with the other dimensions)"
    if budget is not None:
        next_space = _keep_within_budget(space, next_space, scores, budget, actions)
    return next_space, actions


def _evidence(record: dict) -> float:
    """How many standard errors the slope is from flat (0 for no slope: an exploratory expand)."""
    slope, se = record["slope"], record.get("slope_se")
    if not slope:
        return 0.0
    return abs(slope) / se if se else float("inf")


def _fits(space: SearchSpace, budget: Budget) -> bool:
    try:
        check_feasible(space, budget)
    except UserError:
        return False
    return True


def _keep_within_budget(start: SearchSpace, space: SearchSpace, scores: dict, budget: Budget,
                        actions: dict) -> SearchSpace:
    moved = [d for d in scores if list(space.dimensions[d]) != list(start.dimensions[d])
             and not actions[d].startswith("drop")]
    for dim in sorted(moved, key=lambda d: _evidence(scores[d])):
        if _fits(space, budget):
            break
        if _valid(space, dim, list(start.dimensions[dim])):
            space = space.with_choices(**{dim: list(start.dimensions[dim])})
            actions[dim] += " (reverted: the evolved space would hold no subnet within the budget)"
    return space


RECORD_FILE = "evolve_space.json"


class SpaceEvolution:
    """Rounds of score -> move -> (retrain) in folder `out`, resumable round by round.

    `fitness_for(round, space)` returns the fitness of that round's supernet (the
    CLI trains it briefly from the previous round's weights); every round is
    recorded in OUT/evolve_space.json, the final space in OUT/space_final.json.
    """

    def __init__(self, space: SearchSpace, budget: Budget, fitness_for, out, rounds: int = 3, samples: int = 20,
                 tolerance: float = 0.002, seed: int = 0, techniques: Techniques = Techniques(),
                 progress: bool = True):
        if rounds < 1 or samples < 1:
            raise UserError(f"rounds and samples must be at least 1, got {rounds} and {samples}")
        self.space, self.budget, self.fitness_for = space, budget, fitness_for
        self.out, self.rounds, self.samples, self.tolerance = Path(out), rounds, samples, tolerance
        self.seed, self.techniques, self.progress = seed, techniques, progress
        self.settings = {"rounds": rounds, "samples": samples, "tolerance": tolerance, "seed": seed,
                         "budget": budget.to_dict(), "start_space": space.to_dict()}
        self.records = self._load()

    def _load(self) -> list:
        path = self.out / RECORD_FILE
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path} is unreadable ({exc}); delete it to start over") from None
        if {k: v for k, v in data.get("settings", {}).items() if k != "rounds"} != \
                {k: v for k, v in self.settings.items() if k != "rounds"}:
            raise UserError(f"{self.out} holds a space evolution with other settings; use another --out or --force")
        return data["rounds"]

    def current_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.records[-1]["next_space"]) if self.records else self.space

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.rounds, initial=len(self.records), desc="evolve space", unit="round",
                   disable=not self.progress)
        while len(self.records) < self.rounds:
            r = len(self.records)
            space = self.current_space()
            fitness = self.fitness_for(r, space)
            cache = FitnessCache(self.out / f"round{r}_fitness_cache.json", fitness.identity)
            rng = np.random.default_rng([self.seed, r])
            scores = score_space(space, self.budget, fitness, cache, self.samples, rng, self.techniques,
                                 self.progress)
            next_space, actions = evolve_once(space, scores, self.tolerance, budget=self.budget,
                                              explore=r < self.rounds - 1)
            self.records.append({"round": r, "space": space.to_dict(), "fitness": fitness.identity,
                                 "dimensions": {d: dict(scores[d], action=actions[d],
                                                        next_choices=list(next_space.dimensions[d]))
                                                for d in scores},
                                 "next_space": next_space.to_dict()})
            self._save()
            bar.update()
        bar.close()
        return self._save()

    def _save(self) -> dict:
        result = {"settings": self.settings, "rounds": self.records,
                  "final_space": self.current_space().to_dict()}
        atomic.write_json(self.out / RECORD_FILE, result)
        atomic.write_json(self.out / "space_final.json", self.current_space().to_dict())
        return result
