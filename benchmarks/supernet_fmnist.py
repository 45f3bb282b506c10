"""Benchmark: train the Fashion-MNIST-scale supernet, then check how well inherited
weights rank subnets.

For N random subnets: validation accuracy with inherited weights vs. the same subnets
fine-tuned briefly from those weights; reports Kendall tau of the two rankings, the
best inherited accuracy and the wall time per supernet epoch on this machine.
Validation = the deterministic split of the training set (the test set is not used).

    .venv/bin/python benchmarks/supernet_fmnist.py            # ~10 min on 2 (shared) cores
    .venv/bin/python benchmarks/supernet_fmnist.py --resume   # after an interruption

Writes benchmarks/results/supernet_fmnist.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import atomic, datasets  # noqa: E402  (sets TF_USE_LEGACY_KERAS first)
from mcuformer.cli import run_guarded  # noqa: E402


def kendall_tau_b(a, b) -> float:
    """Kendall's tau-b (ties in either ranking handled)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n_a, n_b = np.count_nonzero(da), np.count_nonzero(db)
    return float(np.sum(da * db) / np.sqrt(n_a * n_b)) if n_a and n_b else float("nan")


def main(argv=None) -> int:
    from keras_supernet.run_folder import TrainSettings, finetune_settings   # no TensorFlow

    d = TrainSettings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default=str(ROOT / "configs/spaces/fmnist.yaml"))
    p.add_argument("--work", default=str(ROOT / "out/bench_supernet_fmnist"), help="supernet training folder")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-limit", type=int, default=0, help="0 = the whole training split (54,000 images)")
    p.add_argument("--sampling", choices=("sandwich", "uniform"), default=d.sampling)
    p.add_argument("--num-random", type=int, default=d.num_random)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--distill", action="store_true", help="in-place distillation (sandwich)")
    p.add_argument("--augment", action="store_true", help="light augmentation (slows a 2-epoch schedule)")
    p.add_argument("--subnets", type=int, default=20)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-limit", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/supernet_fmnist.json"))
    args = p.parse_args(argv)

    from keras_supernet.finetune import evaluate_model, finetune_subnet
    from keras_supernet.space import SearchSpace
    from keras_supernet.supernet import export_subnet
    from keras_supernet.train import SupernetTrainer, evaluate_subnet, quiet_tensorflow

    quiet_tensorflow()
    started = time.time()
    space = SearchSpace.load(args.space)
    data = datasets.load_fashion_mnist()
    settings = TrainSettings(epochs=args.epochs, train_limit=args.train_limit, sampling=args.sampling,
                             num_random=args.num_random, distill=args.distill, lr=args.lr,
                             warmup_epochs=args.warmup_epochs, augment=args.augment, seed=args.seed)
    trainer = SupernetTrainer(space, settings, args.work, data, resume=args.resume, force=not args.resume)
    history = trainer.fit()
    train_seconds = time.time() - started

    rng = np.random.default_rng(args.seed + 1)
    configs = []
    while len(configs) < args.subnets:
        c = space.sample(rng)
        if c not in configs:
            configs.append(c)
    ft_settings = finetune_settings(epochs=args.finetune_epochs, augment=args.augment, seed=args.seed)
    x_ft, y_ft = trainer.x_train[:args.finetune_limit], trainer.y_train[:args.finetune_limit]
    rows = []
    for k, config in enumerate(configs):
        t0 = time.time()
        inherited = evaluate_subnet(trainer.supernet, config, trainer.x_val, trainer.y_val)
        model = export_subnet(trainer.supernet, config)
        assert abs(evaluate_model(model, trainer.x_val, trainer.y_val) - inherited) < 1e-3
        finetune_subnet(model, x_ft, y_ft, trainer.x_val, trainer.y_val, ft_settings, progress=False)
        tuned = evaluate_model(model, trainer.x_val, trainer.y_val)
        rows.append({"arch": config.to_dict(), "describe": config.describe(), "params": config.params(),
                     "macs": config.macs(), "inherited_val_acc": inherited, "finetuned_val_acc": tuned,
                     "seconds": round(time.time() - t0, 1)})
        print(f"[{k + 1}/{len(configs)}] {config.describe()}: inherited {inherited:.4f} -> fine-tuned {tuned:.4f}")

    inherited = [r["inherited_val_acc"] for r in rows]
    tuned = [r["finetuned_val_acc"] for r in rows]
    best = int(np.argmax(inherited))
    result = {
        "benchmark": "supernet_fmnist",
        "command": "python benchmarks/supernet_fmnist.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "space": space.to_dict(),
        "train_settings": settings.to_dict(),
        "finetune": {"epochs": args.finetune_epochs, "images": len(x_ft), "lr": ft_settings.lr},
        "train_images": len(trainer.x_train), "val_images": len(trainer.y_val),
        "supernet_history": history,
        "wall_seconds_per_epoch": float(np.mean([h["epoch_seconds"] for h in history])) if history else None,
        "kendall_tau_inherited_vs_finetuned": kendall_tau_b(inherited, tuned),
        "best_inherited_val_acc": inherited[best], "best_inherited_arch": rows[best]["describe"],
        "mean_inherited_val_acc": float(np.mean(inherited)), "mean_finetuned_val_acc": float(np.mean(tuned)),
        "subnets": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0]},
        "wall_seconds_total": round(time.time() - started, 1), "wall_seconds_supernet_training": round(train_seconds, 1),
    }
    atomic.write_json(args.out, result)
    print(f"Kendall tau {result['kendall_tau_inherited_vs_finetuned']:.3f}, best inherited val acc "
          f"{result['best_inherited_val_acc']:.4f}, {result['wall_seconds_per_epoch']:.0f} s per supernet epoch "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
