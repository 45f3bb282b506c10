"""Benchmark: budget-constrained search on the Fashion-MNIST space, and the memory model.

1. Memory-model evaluations per second (pure Python, random subnets of the space).
2. Predicted TFLM arena of the DeiT-Tiny- and MCUFormer-shaped models with the
   scheduling techniques off (TFLiteConverter builtin graph) and on, 32-bit Cortex-M.
3. For two budgets: evolutionary search (fitness = inherited-weight top-1 on the
   validation split), then the winner and a random budget-feasible subnet are each
   fine-tuned from their inherited weights with the same short schedule and
   scored on the test set.

    .venv/bin/python benchmarks/search_fmnist.py --supernet out/bench_supernet_fmnist

The supernet folder is copied first, so its checkpoint cannot change under the
search. Writes benchmarks/results/search_fmnist.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import atomic, datasets  # noqa: E402  (sets TF_USE_LEGACY_KERAS first)

# The Fashion-MNIST space's subnets need 2.6-9 KiB of arena and 78-190 KiB of flash
# (54.6 KiB of it code): budgets that bind inside that range.
BUDGETS = {"tight (6 KiB arena / 112 KiB flash)": ("6KiB", "112KiB"),
           "64 KiB / 144 KiB": ("64KiB", "144KiB")}


def memory_model_rate(space, n: int = 20000) -> dict:
    from memory_model.memory import evaluate
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(n)]
    start = time.perf_counter()
    for config in configs:
        evaluate(config)
    seconds = time.perf_counter() - start
    return {"subnets": n, "seconds": seconds, "evaluations_per_second": n / seconds}


def technique_table() -> dict:
    from keras_supernet.arch import deit_tiny, mcuformer_shape
    from memory_model.memory import Techniques, evaluate
    combos = {"off (builtin ops)": Techniques.off(),
              "operator integration": Techniques(True, False, False),
              "+ patch decomposition": Techniques(True, True, False),
              "+ token overwrite (all on)": Techniques(True, True, True)}
    out = {}
    for name, config in (("deit_tiny", deit_tiny()), ("mcuformer_shape", mcuformer_shape())):
        out[name] = {label: {"arena_bytes": c.sram, "head": c.head, "tail": c.tail}
                     for label, c in ((label, evaluate(config, t)) for label, t in combos.items())}
        out[name]["model_flash_bytes"] = evaluate(config).model_bytes
    return out


def builtin_baselines_measured() -> dict:
    """DeiT-Tiny / MCUFormer-shaped builtin baselines (converter/baseline.py, weights drawn
    like trained ones so nothing folds away) in the tflite-micro wheel vs the analytic model."""
    from converter.baseline import convert_builtin, tflm_arena
    from keras_supernet.arch import deit_tiny, mcuformer_shape
    from keras_supernet.static_vit import build_vit
    from memory_model.builtin_graph import builtin_graph
    from memory_model.tflite_graph import plan_graph
    out = {}
    rng = np.random.default_rng(0)
    for name, config in (("deit_tiny", deit_tiny()), ("mcuformer_shape", mcuformer_shape())):
        model = build_vit(config)
        for w in model.weights:
            w.assign(rng.normal(0, 0.05, w.shape).astype(np.float32) + (1.0 if "gamma" in w.name else 0.0))
        images = rng.random((4, config.image_size, config.image_size, config.channels))
        measured = tflm_arena(convert_builtin(model, images))
        predicted = plan_graph(builtin_graph(config), pointer_size=8, recording=True)
        out[name] = {"measured_wheel": measured, "predicted_head": predicted.head_bytes,
                     "predicted_total": predicted.arena_bytes,
                     "error_percent": 100.0 * (predicted.arena_bytes - measured["total"]) / measured["total"]}
    return out


def finetune_test_accuracy(supernet, config, data, settings) -> float:
    from keras_supernet.finetune import evaluate_model, finetune_subnet
    from keras_supernet.supernet import export_subnet
    model = export_subnet(supernet, config)
    x_tr, y_tr, x_val, y_val = datasets.train_val_split(data.x_train, data.y_train)
    limit = settings.train_limit or len(y_tr)
    finetune_subnet(model, x_tr[:limit], y_tr[:limit], x_val[:1000], y_val[:1000], settings, progress=False)
    return evaluate_model(model, data.x_test, data.y_test)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", required=True, help="trained Fashion-MNIST supernet folder (train-supernet --out)")
    p.add_argument("--work", default=str(ROOT / "out/bench_search_fmnist"))
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--val-limit", type=int, default=2000)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-limit", type=int, default=10000)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/search_fmnist.json"))
    args = p.parse_args(argv)

    from keras_supernet.arch import ArchConfig
    from keras_supernet.run_folder import TrainSettings, trained_space
    from search.budget import Budget
    from search.evolution import EvolutionSettings, Search
    from search.fitness import SupernetFitness
    from memory_model.memory import evaluate

    work = Path(args.work)
    snapshot = work / "supernet"
    if not snapshot.exists():
        shutil.copytree(args.supernet, snapshot, ignore=shutil.ignore_patterns("logs"))
    space = trained_space(snapshot)
    result = {"machine": f"{platform.machine()}, {platform.python_version()}",
              "command": "benchmarks/search_fmnist.py " + " ".join(argv or sys.argv[1:]),
              "memory_model": memory_model_rate(space), "techniques": technique_table(),
              "builtin_baselines": builtin_baselines_measured(), "budgets": {}}
    data = datasets.load("fashion_mnist")
    fitness = SupernetFitness(snapshot, data, val_limit=args.val_limit, space=space)
    half = max(1, args.population // 2)
    settings = EvolutionSettings(population=args.population, generations=args.generations,
                                 parents=max(2, args.population // 5), mutations=half, crossovers=half)
    tune = TrainSettings(epochs=args.finetune_epochs, batch_size=128, lr=5e-4, warmup_epochs=0.0,
                         train_limit=args.finetune_limit, seed=0)
    for label, (sram, flash) in BUDGETS.items():
        budget = Budget.from_args(sram=sram, flash=flash)
        folder = work / label.split()[0]
        shutil.rmtree(folder, ignore_errors=True)          # a fresh search (and fitness cache): real wall time
        start = time.perf_counter()
        found = Search(space, budget, fitness, folder, settings).run()
        wall = time.perf_counter() - start
        winner = ArchConfig.from_dict(found["best"]["config"])
        rng = np.random.default_rng(1)
        while True:
            random_pick = space.sample(rng)
            if budget.admits(evaluate(random_pick)):
                break
        result["budgets"][label] = {
            "budget": budget.to_dict(), "search_wall_seconds": wall, "evaluated": len(found["population"]),
            "winner": {"arch": winner.to_dict(), "cost": evaluate(winner).to_dict(),
                       "val_top1_inherited": found["best"]["accuracy"],
                       "test_top1_finetuned": finetune_test_accuracy(fitness.supernet, winner, data, tune)},
            "random": {"arch": random_pick.to_dict(), "cost": evaluate(random_pick).to_dict(),
                       "val_top1_inherited": fitness([random_pick])[0],
                       "test_top1_finetuned": finetune_test_accuracy(fitness.supernet, random_pick, data, tune)},
            "pareto_front_size": len(found["pareto_front"])}
        print(label, {k: result["budgets"][label][k]["test_top1_finetuned"] for k in ("winner", "random")},
              f"search {wall:.0f} s", flush=True)
    result["settings"] = {"search": dataclasses.asdict(settings), "val_limit": args.val_limit,
                          "finetune": tune.to_dict()}
    atomic.write_json(args.out, result)
    print(f"memory model: {result['memory_model']['evaluations_per_second']:,.0f} evaluations/s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
