"""Float probe (issue 15): would a deeper convolutional tokenizer lift the F746 model?

The deployed tokenizer is one 7x7 window at stride 4 (MCUF_PATCH_EMBED, K=7, P=4). Two
strided 3x3 convolutions with a ReLU between them see the same 7x7 field but add a
non-linearity and a second layer, as CCT's conv tokenizer does (MCUF_PATCH_EMBED version 4
runs such layers; the model side does not build them yet). This
probe trains, from scratch and with the same recipe, teacher and transformer (the F746
winner's blocks), each tokenizer variant, so that the op contract work is spent only if the
stem pays:

  window7   the deployed tokenizer: 7x7 window, stride 4, 1 -> E
  stem2     3x3 stride 2, 1 -> 24, ReLU; then 3x3 stride 2, 24 -> E (two chained patch embeddings)
  stem3     3x3 stride 1, 1 -> 16, ReLU; 3x3 stride 2, 16 -> 32, ReLU; 3x3 stride 2, 32 -> E

    .venv/bin/python benchmarks/probe/tokenizer_stem.py --variant stem2 [--epochs 12] [--seed 1]

Selection is on the validation split (the best epoch is kept); the test set is read once, at
the end. Resumes from its checkpoint. Merges its row into
benchmarks/results/probe_tokenizer_stem.json.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from common import atomic  # noqa: E402  (sets TF_USE_LEGACY_KERAS first)

RESULTS = ROOT / "benchmarks" / "results" / "probe_tokenizer_stem.json"
WINNER = "f746_15m/winner_kd_cnn4_50ep"       # the transformer every variant shares
# name: [(kernel, stride, channels)] before the last tokenizer conv (ReLU after each), then its (kernel, stride)
VARIANTS = {"window7": ([], (7, 4)), "stem2": ([(3, 2, 24)], (3, 2)),
            "stem3": ([(3, 1, 16), (3, 2, 32)], (3, 2))}


def build(variant: str, config):
    import tf_keras as keras

    from keras_supernet.static_vit import AttentionBlock, ClassifierHead, MlpBlock, PatchEmbed

    stem, (kernel, stride) = VARIANTS[variant]
    inputs = keras.Input((config.image_size, config.image_size, config.channels), name="image")
    x, size, channels, macs = inputs, config.image_size, config.channels, 0
    for i, (k, s, c) in enumerate(stem):
        x = keras.layers.Conv2D(c, k, strides=s, padding="same", activation="relu", name=f"stem{i}")(x)
        size //= s
        macs += size * size * k * k * channels * c
        channels = c
    x = PatchEmbed(stride, config.embed_dim, kernel_size=kernel, name="patch_embed")(x)
    tokens = (size // stride) ** 2
    macs += tokens * kernel * kernel * channels * config.embed_dim
    for i in range(config.depth):
        x = AttentionBlock(config.num_heads[i], config.qkv_dim[i], config.qkv_rank[i], config.proj_rank[i],
                           name=f"block{i}_attn")(x)
        x = MlpBlock(config.mlp_hidden[i], config.fc1_rank[i], config.fc2_rank[i], name=f"block{i}_mlp")(x)
    outputs = ClassifierHead(config.num_classes, config.pool, name="head")(x)
    return keras.Model(inputs, outputs, name=variant), config.macs() - config.layer_macs()["patch_embed"] + macs


def merge(row: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    lock_path = ROOT / "out" / "probe_tokenizer_stem" / "results.lock"     # the runs of the 3 variants merge here
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"transformer": WINNER, "rows": {}}
        doc["rows"][row["variant"]] = row
        atomic.write_json(RESULTS, doc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0,
                   help="another run: seeds the initial weights and the batch order (row <variant>_seed<n>)")
    p.add_argument("--val-limit", type=int, default=2000)
    p.add_argument("--teacher", default=str(ROOT / "out/bench_accuracy_fmnist/teacher_cnn4/teacher.keras"))
    p.add_argument("--work", default=str(ROOT / "out" / "probe_tokenizer_stem"))
    a = p.parse_args(argv)

    from common import datasets
    from common.errors import UserError
    from converter.keras_load import load_model
    from keras_supernet.arch import ArchConfig
    from keras_supernet.batches import split_data
    from keras_supernet.finetune import evaluate_model, finetune_subnet
    from keras_supernet.run_folder import finetune_settings

    published = json.loads((ROOT / "benchmarks/results/accuracy_fmnist.json").read_text())["results"]
    config = ArchConfig.from_dict(published[WINNER]["config"])
    if not Path(a.teacher).exists():
        raise SystemExit(f"error: no teacher at {a.teacher}; run benchmarks/accuracy_fmnist.py --only teacher_cnn4")
    started = time.time()
    data = datasets.load("fashion_mnist")
    x_tr, y_tr, x_val, y_val = split_data(data, config.image_size, config.channels, val_limit=a.val_limit)
    name = a.variant + (f"_seed{a.seed}" if a.seed else "")
    if a.seed:
        import tf_keras as keras
        keras.utils.set_random_seed(a.seed)
    model, macs = build(a.variant, config)
    settings = finetune_settings(epochs=a.epochs, seed=a.seed)
    try:
        history = finetune_subnet(model, x_tr, y_tr, x_val, y_val, settings, teacher=load_model(a.teacher),
                                  backup_dir=Path(a.work) / name / "backup")
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    x_test = datasets.resize(data.x_test, config.image_size, config.image_size, config.channels)
    row = {"variant": name, "params": int(model.count_params()), "macs": int(macs), "epochs": a.epochs,
           "best_val": history[-1]["best_val_acc"] if history else None,
           "best_epoch": history[-1]["best_epoch"] if history else None,
           "float_test_top1": evaluate_model(model, x_test, data.y_test),
           "wall_seconds": round(time.time() - started, 1),
           "command": "benchmarks/probe/tokenizer_stem.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    merge(row)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
