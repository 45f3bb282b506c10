"""Benchmark: a stock tf_keras ViT through TFLiteConverter's builtin ops vs through this converter.

Three ViTs written with ordinary tf_keras layers (tests/byo_models.py: relu
with Conv2D patches and mean pooling; relu with patches reshaped to 6-D,
permuted and projected by Dense; GELU with Conv2D patches and a class token),
trained briefly on Fashion-MNIST, then the SAME weights:

* builtin: the user's model itself through TFLiteConverter's int8 path
  (converter/baseline.convert_builtin), run by TFLM's builtin kernels;
* ours: `mcuformer convert --custom-objects tests/byo_layers.py` (fused custom
  ops, offline plan).

For each: arena (TFLM host measured, Cortex-M planned and measured under QEMU),
flash (the .tflite), instructions per inference (QEMU mps2-an500 Cortex-M7,
CMSIS-NN), int8 accuracy on the Fashion-MNIST test set, beside the float
accuracy of the user's model.

    .venv/bin/python benchmarks/byo_vit.py

Writes benchmarks/results/byo_vit.json (atomically).
"""
from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import common  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
import numpy as np  # noqa: E402

from common.atomic import write_json  # noqa: E402
from mcuformer.cli import run_guarded  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "byo_vit.json"
MODELS = ("conv_mean_relu", "dense_mean_relu", "conv_cls_gelu")
TRAIN_IMAGES, EPOCHS = 20000, 2


def _accuracy(logits, labels) -> float:
    return round(float(np.mean(np.argmax(logits, axis=1) == labels)), 4)


def _builtin(model, data, calib, root, work, image) -> dict:
    """The user's model through TFLiteConverter, measured; or why TFLM cannot run it."""
    from benchmarks.arena import BUILTIN_QEMU_SLACK, _run_qemu
    from converter import baseline
    from deploy import app
    from deploy.host import run_host

    tflite = baseline.convert_builtin(model, calib)
    path = work / "builtin.tflite"
    path.write_bytes(tflite)
    out = {"flash_bytes": len(tflite)}
    try:
        on_host = run_host(root, path, image[None])
    except Exception as exc:  # TFLM refuses the model (e.g. an op it has no kernel for)
        out["runs_in_tflm"] = False
        out["why"] = str(exc).strip().splitlines()[-1].replace(str(work.parent), "<work>")[:300]
        return out
    out.update(runs_in_tflm=True, host_arena_used_bytes=on_host.arena_used_bytes,
               planned_arena_bytes=baseline.planned_arena(tflite, pointer_size=4))
    out["qemu"], _ = _run_qemu(root, path, app.arena_size(on_host.arena_used_bytes + BUILTIN_QEMU_SLACK),
                               image, 0, True, work)
    x_test = ((data.x_test.astype(np.int16)) - 128).astype(np.int8)
    out["int8_accuracy"] = _accuracy(baseline.run_builtin(tflite, x_test), data.y_test)
    return out


def _ours(path, data, root, work, image) -> dict:
    from benchmarks.arena import _run_qemu
    from converter.convert import ConvertOptions, convert
    from deploy import app

    report = convert(path, work / "ours", data, ConvertOptions(baseline=False,
                                                               custom_objects=str(ROOT / "tests" / "byo_layers.py")),
                     progress=False)
    tflite = work / "ours" / "model.tflite"
    qemu, _ = _run_qemu(root, tflite, app.arena_size(report["required_arena_bytes"]), image, 0, False, work)
    return {"flash_bytes": report["flash_bytes"], "planned_arena_bytes": report["planned_arena_bytes"],
            "planned_arena_bytes_host": report["planned_arena_bytes_host"], "qemu": qemu,
            "int8_accuracy": round(report["accuracy"]["int8_reference"], 4),
            "float_accuracy_mapped": round(report["accuracy"]["float"], 4),
            "max_abs_logit_difference": report["import"]["max_abs_logit_difference"],
            "arch": report["arch"]}


def main() -> int:
    from common.datasets import load_fashion_mnist
    from deploy import tflm
    from tests import byo_models as bm

    root = tflm.ensure_tflm()
    data = load_fashion_mnist()
    calib = data.x_train[:100].astype(np.float32) / 255.0
    image = (data.x_test[0].astype(np.int16) - 128).astype(np.int8)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            work = Path(tmp) / name
            work.mkdir()
            build, input_scale, from_logits = {**bm.STOCK_MODELS, **bm.BUILTIN_FRIENDLY}[name]
            print(f"{name}: training {EPOCHS} epochs on {TRAIN_IMAGES} images", flush=True)
            model = bm.train(build(), data, images=TRAIN_IMAGES, epochs=EPOCHS, input_scale=input_scale,
                             from_logits=from_logits)
            model.save(work / "model.keras")
            float_acc = _accuracy(model.predict(data.x_test / 255.0 * input_scale, batch_size=256, verbose=0),
                                  data.y_test)
            rows[name] = {"float_accuracy": float_acc, "test_images": int(len(data.y_test)),
                          "ours": _ours(work / "model.keras", data, root, work, image),
                          "builtin": _builtin(model, data, calib, root, work, image)}
            print(rows[name], flush=True)
    write_json(RESULTS, {"command": "benchmarks/byo_vit.py", "train": f"{EPOCHS} epochs on {TRAIN_IMAGES} "
                         f"Fashion-MNIST training images, Adam 3e-3, batch 64", "models": rows,
                         "device": "QEMU mps2-an500 (Cortex-M7), cortex_m_generic cortex-m7+fp CMSIS-NN; "
                                   "host TFLM x86_64", "machine": platform.platform(),
                         "tflm_commit": tflm.tree_commit(root)[:9]})
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
