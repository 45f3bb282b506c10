"""A controlled run of the training recipe (README "Training recipe"): one static ViT
trained from scratch by `finetune_subnet` on Fashion-MNIST, validation on the first
`--val-limit` images of the validation split, per-epoch accuracy printed as JSON.

    python -m keras_supernet.recipe_run --epochs 4 --label-smoothing 0.1 --warmup-epochs 0.3
"""
from __future__ import annotations

import argparse
import json
import time

from common.errors import UserError


def parse_args(argv=None):
    from .run_folder import finetune_settings

    d = finetune_settings()
    p = argparse.ArgumentParser(prog="python -m keras_supernet.recipe_run", description=__doc__.split("\n\n")[0])
    p.add_argument("--patch-size", type=int, default=7)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--mlp-ratio", type=float, default=2.0)
    p.add_argument("--pool", choices=("mean", "cls", "seq"), default="mean")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--clipnorm", type=float, default=d.clipnorm)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment)
    p.add_argument("--min-steps", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--val-limit", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from common import datasets

    from .arch import ArchConfig
    from .finetune import finetune_subnet
    from .batches import split_data
    from .run_folder import finetune_settings
    from .static_vit import build_vit

    head_dim = 16
    config = ArchConfig(image_size=28, channels=1, num_classes=10, patch_size=args.patch_size,
                        embed_dim=args.embed_dim, num_heads=(args.heads,) * args.depth,
                        qkv_dim=(args.heads * head_dim,) * args.depth,
                        mlp_hidden=(round(args.mlp_ratio * args.embed_dim),) * args.depth, pool=args.pool)
    settings = finetune_settings(epochs=args.epochs, lr=args.lr, warmup_epochs=args.warmup_epochs,
                                 label_smoothing=args.label_smoothing, clipnorm=args.clipnorm,
                                 augment=args.augment, min_steps=args.min_steps, seed=args.seed)
    x_tr, y_tr, x_val, y_val = split_data(datasets.load("fashion_mnist"), 28, 1, train_limit=args.train_limit,
                                          val_limit=args.val_limit)
    start = time.time()
    history = finetune_subnet(build_vit(config), x_tr, y_tr, x_val, y_val, settings, progress=False)
    print(json.dumps({"arch": config.describe(), "params": config.params(), "train_images": len(x_tr),
                      "settings": settings.to_dict(), "seconds": round(time.time() - start),
                      "val_acc": [round(r["val_acc"], 4) for r in history],
                      "epoch_seconds": [round(r["epoch_seconds"]) for r in history],
                      "optimizer_steps": history[-1]["optimizer_steps"]}))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
