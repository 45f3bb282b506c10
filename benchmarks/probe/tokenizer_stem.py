"""Probe (issue 15): would a deeper convolutional tokenizer lift the F746 model?

The deployed tokenizer is one 7x7 window at stride 4 (MCUF_PATCH_EMBED, K=7, P=4). Strided 3x3
convolutions with a ReLU between them see the same 7x7 field but add non-linearity and layers,
as CCT's conv tokenizer does: `ArchConfig.stem` (SPEC 3: MCUF_PATCH_EMBED layers with ReLU). This
probe trains, from scratch and with the same recipe, teacher and transformer (the F746 winner's
blocks), each tokenizer variant:

  window7   the deployed tokenizer: 7x7 window, stride 4, 1 -> E
  stem2     stem 3x3 stride 2, 1 -> 24; then the tokenizer 3x3 stride 2, 24 -> E
  stem3     stem 3x3 stride 1, 1 -> 16 and 3x3 stride 2, 16 -> 32; then 3x3 stride 2, 32 -> E

    .venv/bin/python benchmarks/probe/tokenizer_stem.py --variant stem2 [--epochs 12] [--seed 1]
    .venv/bin/python benchmarks/probe/tokenizer_stem.py --variant stem3 --epochs 50 --convert

Selection is on the validation split (the best epoch is kept); the test set is read once, at
the end. Resumes from its checkpoint. Merges its row into
benchmarks/results/probe_tokenizer_stem.json and keeps the trained weights, by name, in
<work>/<row>/weights.npz. --convert (after training, or on the kept weights) saves the static
model as <work>/<row>/subnet.keras, converts it with `mcuformer convert` as the accuracy
benchmark does (500 calibration images, the 10,000 test images, int8 through the numpy
reference) and runs it in TFLM on the host over the same images when a TFLM tree exists.
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

import numpy as np  # noqa: E402

from common import atomic  # noqa: E402  (sets TF_USE_LEGACY_KERAS first)

RESULTS = ROOT / "benchmarks" / "results" / "probe_tokenizer_stem.json"
WINNER = "f746_15m/winner_kd_cnn4_50ep"       # the transformer every variant shares
# name: the ArchConfig fields that replace the winner's tokenizer
VARIANTS = {"window7": {}, "stem2": {"stem": [[3, 2, 24]], "patch_size": 2, "patch_kernel": 3},
            "stem3": {"stem": [[3, 1, 16], [3, 2, 32]], "patch_size": 2, "patch_kernel": 3}}


def variant_config(variant: str):
    from keras_supernet.arch import ArchConfig

    published = json.loads((ROOT / "benchmarks/results/accuracy_fmnist.json").read_text())["results"]
    return ArchConfig.from_dict(published[WINNER]["config"]).replace(**VARIANTS[variant])


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
    p.add_argument("--convert", action="store_true",
                   help="then convert the trained model to int8 and measure it (numpy reference, TFLM host)")
    a = p.parse_args(argv)

    name = a.variant + (f"_seed{a.seed}" if a.seed else "") + (f"_{a.epochs}ep" if a.epochs != 12 else "")
    folder = Path(a.work) / name
    if not (folder / "weights.npz").exists():
        train(a, name, folder, argv)
    if a.convert:
        convert(a, name, folder, argv)
    return 0


def train(a, name: str, folder: Path, argv) -> None:
    from common import datasets
    from common.errors import UserError
    from converter.keras_load import load_model
    from keras_supernet.batches import split_data
    from keras_supernet.finetune import evaluate_model, finetune_subnet
    from keras_supernet.run_folder import finetune_settings
    from keras_supernet.static_vit import build_vit

    config = variant_config(a.variant)
    if not Path(a.teacher).exists():
        raise SystemExit(f"error: no teacher at {a.teacher}; run benchmarks/accuracy_fmnist.py --only teacher_cnn4")
    started = time.time()
    data = datasets.load("fashion_mnist")
    x_tr, y_tr, x_val, y_val = split_data(data, config.image_size, config.channels, val_limit=a.val_limit)
    if a.seed:
        import tf_keras as keras
        keras.utils.set_random_seed(a.seed)
    model = build_vit(config, name=a.variant)
    settings = finetune_settings(epochs=a.epochs, seed=a.seed)
    try:
        history = finetune_subnet(model, x_tr, y_tr, x_val, y_val, settings, teacher=load_model(a.teacher),
                                  backup_dir=folder / "backup")
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    x_test = datasets.resize(data.x_test, config.image_size, config.image_size, config.channels)
    row = {"variant": name, "params": config.params(), "macs": config.macs(), "epochs": a.epochs,
           "best_val": history[-1]["best_val_acc"] if history else None,
           "best_epoch": history[-1]["best_epoch"] if history else None,
           "float_test_top1": evaluate_model(model, x_test, data.y_test),
           "wall_seconds": round(time.time() - started, 1),
           "command": "benchmarks/probe/tokenizer_stem.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    with atomic.atomic_path(folder / "weights.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **{w.name: w.numpy() for w in model.weights})
    merge(row)
    print(json.dumps(row))


def convert(a, name: str, folder: Path, argv) -> None:
    """The kept weights as a static model, converted and measured like the accuracy benchmark's models."""
    import subprocess

    from deploy import tflm
    from deploy.verify import verify
    from keras_supernet.static_vit import build_vit
    from mcuformer.commands.finetune import save_keras_atomic

    model = build_vit(variant_config(a.variant), name=a.variant)
    with np.load(folder / "weights.npz") as kept:
        for w in model.weights:
            w.assign(kept[w.name])
    save_keras_atomic(model, folder / "subnet.keras")
    out = folder / "model"
    subprocess.run([sys.executable, "-m", "mcuformer", "convert", str(folder / "subnet.keras"), "--out", str(out),
                    "--data", "fashion_mnist", "--calib", "500", "--eval", "10000", "--force", "--no-baseline"],
                   check=True, cwd=ROOT)
    report = json.loads((out / "report.json").read_text())
    result = {"float_top1": report["float_accuracy"], "int8_top1": report["int8_accuracy"], "test_images": 10000,
              "flash_model_bytes": report["flash_bytes"], "required_arena_bytes": report["required_arena_bytes"],
              "convert_command": "benchmarks/probe/tokenizer_stem.py " + " ".join(argv if argv is not None
                                                                                   else sys.argv[1:])}
    if tflm.find_tflm() is not None:
        host = verify(out, images=10000)["host"]
        result["tflm_host"] = {"images": 10000, "int8_top1": host["int8_accuracy"],
                               "mismatched_outputs": host["mismatched_outputs"]}
    doc = json.loads(RESULTS.read_text())
    merge({**doc["rows"][name], **result})
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
