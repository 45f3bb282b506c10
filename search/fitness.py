"""Fitness of subnets: top-1 with inherited supernet weights on the validation
split, batched, and cached on disk keyed by the supernet checkpoint's identity.

Any object with `identity` (str) and `__call__(configs) -> list[float]` is a
fitness; `SupernetFitness` is the real one, tests may pass a deterministic one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tqdm import tqdm

from common import atomic
from common.errors import UserError


def config_key(config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))


def checkpoint_identity(supernet_dir) -> str:
    """Hash of the latest supernet checkpoint's bytes (index + data shards)."""
    ckpt = Path(supernet_dir) / "ckpt"
    state = ckpt / "checkpoint"
    if not state.exists():
        raise UserError(f"{supernet_dir} has no supernet checkpoint; run `mcuformer train-supernet --out "
                        f"{supernet_dir}` first")
    latest = None
    for line in state.read_text().splitlines():
        if line.startswith("model_checkpoint_path:"):
            latest = line.split(":", 1)[1].strip().strip('"')
    if not latest:
        raise UserError(f"{state} names no checkpoint; re-run `mcuformer train-supernet`")
    digest = hashlib.sha256()
    files = sorted(ckpt.glob(Path(latest).name + ".*"))
    if not files:
        raise UserError(f"checkpoint {latest} named in {state} is missing; re-run `mcuformer train-supernet`")
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:20]


class FitnessCache:
    """{config: accuracy} in a JSON file, bound to one fitness identity."""

    def __init__(self, path, identity: str):
        self.path, self.identity = Path(path), identity
        self.scores = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise UserError(f"fitness cache {self.path} is unreadable ({exc}); delete it") from None
            if data.get("identity") != identity:
                raise UserError(f"fitness cache {self.path} was computed with another supernet "
                                f"({data.get('identity')}, now {identity}); delete it or use another --out")
            self.scores = data.get("scores", {})

    def save(self) -> None:
        atomic.write_json(self.path, {"identity": self.identity, "scores": self.scores})


def cached_scores(fitness, configs, cache: FitnessCache, progress: bool = False, desc: str = "fitness",
                  chunk: int = 10) -> list:
    """Scores of `configs`, computing only the uncached ones, `chunk` at a time, saving after each."""
    keys = [config_key(c) for c in configs]
    todo = {}
    for key, config in zip(keys, configs):
        if key not in cache.scores and key not in todo:
            todo[key] = config
    if todo:
        items = list(todo.items())
        bar = tqdm(total=len(items), desc=desc, unit="subnet", leave=False, disable=not progress)
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            for (key, _), score in zip(part, fitness([c for _, c in part])):
                cache.scores[key] = float(score)
            cache.save()                         # partial progress survives an interruption
            bar.update(len(part))
        bar.close()
    return [cache.scores[k] for k in keys]


def validation_split(data, val_limit: int = 0) -> tuple:
    """(x_val, y_val): the supernet trainer's validation split of the training set."""
    from common import datasets
    _, _, x_val, y_val = datasets.train_val_split(data.x_train, data.y_train)
    if val_limit:
        x_val, y_val = x_val[:val_limit], y_val[:val_limit]
    return x_val, y_val


def supernet_fitness_identity(supernet_dir, data, val_limit: int = 0) -> str:
    """What a supernet fitness score depends on: checkpoint bytes, data set, validation images."""
    return f"{checkpoint_identity(supernet_dir)}-{data.name}-val{len(validation_split(data, val_limit)[1])}"


class SupernetFitness:
    """Top-1 of each subnet with inherited weights on the validation split (never test)."""

    def __init__(self, supernet_dir, data, val_limit: int = 0, batch_size: int = 500, space=None):
        from keras_supernet.train import load_supernet, quiet_tensorflow

        self.identity = supernet_fitness_identity(supernet_dir, data, val_limit)
        quiet_tensorflow()
        self.supernet = load_supernet(supernet_dir, space)
        self.space = self.supernet.space
        self.x_val, self.y_val = validation_split(data, val_limit)
        self.batch_size = batch_size

    def __call__(self, configs) -> list:
        from keras_supernet.train import evaluate_subnet
        return [evaluate_subnet(self.supernet, c, self.x_val, self.y_val, self.batch_size) for c in configs]
