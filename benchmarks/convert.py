"""Benchmark: flash and arena of our custom-op model vs TFLiteConverter's builtin model.

For a DeiT-Tiny-shaped subnet (224/16, E192, 3 heads, depth 12, MLP 4x), an
MCUFormer-shaped one (240/20, depth 13) and the Fashion-MNIST model (the
searched winner when `--fmnist-subnet` is given, else the fixed fmnist_small
arch), with random weights (sizes do not depend on weight values):

* ours: `model.tflite` bytes, and the planned arena of the memory model
  (memory_model/memory.py) for Cortex-M (4-byte pointers) and for the host build;
* builtin: the TFLiteConverter int8 flatbuffer's bytes, its arena as
  measured by the tflite-micro wheel's interpreter (an x86_64 build, so it is
  compared with our host-pointer plan), and the memory model's Cortex-M arena
  of that same file (search/tflite_graph.py).

Accuracy (`accuracy` entry): a tiny ViT (28/7, E48, depth 2, one low-rank fc1)
trained 3 epochs on 20,000 Fashion-MNIST images, converted post-training
(300 calibration images, percentile 99.9) and with 1 epoch of QAT; float and
int8-reference accuracy on the 10,000 test images.

    .venv/bin/python benchmarks/convert.py [--only deit_tiny] [--fmnist-subnet winner.keras]

Writes benchmarks/results/convert.json (atomically; finished models are kept
and skipped on a re-run).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import common  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common.atomic import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "convert.json"
CALIB_IMAGES = 4


def _models(fmnist_subnet):
    from keras_supernet import arch
    from keras_supernet.static_vit import build_vit, load_vit

    yield "deit_tiny", lambda: build_vit(arch.deit_tiny())
    yield "mcuformer_shape", lambda: build_vit(arch.mcuformer_shape())
    if fmnist_subnet:
        yield "fmnist_winner", lambda: load_vit(fmnist_subnet)
    else:
        yield "fmnist_small", lambda: build_vit(arch.fmnist_small())


def measure(model) -> dict:
    from converter import baseline
    from converter.convert import ConvertOptions, quantize_model
    from converter.tflite_writer import to_flatbuffer

    shape = tuple(model.input_shape[1:])
    images = np.random.default_rng(0).random((CALIB_IMAGES,) + shape)
    t0 = time.time()
    arch, _, qmodel, plan = quantize_model(model, images, ConvertOptions(method="minmax"), progress=False)
    ours = to_flatbuffer(qmodel)
    t1 = time.time()
    builtin = baseline.convert_builtin(model, images, samples=CALIB_IMAGES)
    arena = baseline.tflm_arena(builtin)
    t2 = time.time()
    return {
        "arch": arch.describe(),
        "params": arch.params(),
        "ours": {"flash_bytes": len(ours), "planned_arena_bytes": plan.arena_bytes(pointer_size=4),
                 "planned_arena_bytes_host": plan.arena_bytes(pointer_size=8), "planned_head_bytes": plan.head_bytes,
                 "convert_seconds": round(t1 - t0, 1)},
        "builtin": {"flash_bytes": len(builtin), "tflm_arena_bytes_host": arena["total"],
                    "tflm_head_bytes": arena["head"], "tflm_tail_bytes_host": arena["tail"],
                    "planned_arena_bytes": baseline.planned_arena(builtin, pointer_size=4),
                    "convert_seconds": round(t2 - t1, 1)},
        "arena_reduction_host": round(arena["total"] / plan.arena_bytes(pointer_size=8), 2),
        "arena_reduction_cortex_m": round(baseline.planned_arena(builtin, 4) / plan.arena_bytes(pointer_size=4), 2),
    }


ACCURACY_ARCH = dict(image_size=28, channels=1, patch_size=7, embed_dim=48, num_classes=10, num_heads=(2, 2),
                     qkv_dim=(48, 48), mlp_hidden=(96, 96), fc1_rank=(0, 16))


def measure_accuracy() -> dict:
    import tf_keras as keras

    from converter import qat
    from converter.float_model import read_weights
    from converter.convert import ConvertOptions, calibrated_ranges, quantize_model
    from converter.qmodel import quantize_images, run
    from keras_supernet.arch import ArchConfig
    from keras_supernet.static_vit import build_vit
    from common.datasets import load_fashion_mnist

    ds = load_fashion_mnist()
    keras.utils.set_random_seed(0)
    model = build_vit(ArchConfig(**ACCURACY_ARCH))
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ds.x_train[:20000] / 255.0, ds.y_train[:20000], epochs=3, batch_size=128, verbose=0)
    calib = ds.x_train[np.random.default_rng(0).permutation(len(ds.x_train))[:300]] / 255.0
    x, y = ds.x_test / 255.0, ds.y_test

    def accuracies(float_model, learned=None):
        qmodel = quantize_model(float_model, calib, progress=False, learned_ranges=learned)[2]
        return {"float": float(np.mean(float_model.predict(x, batch_size=500, verbose=0).argmax(1) == y)),
                "int8_reference": float(np.mean(run(qmodel, quantize_images(x)).argmax(1) == y))}

    out = {"arch": ArchConfig(**ACCURACY_ARCH).describe(), "test_images": int(len(y)), "ptq": accuracies(model)}
    initial = calibrated_ranges(*read_weights(model), calib, ConvertOptions(), progress=False)
    finetuned, learned = qat.finetune(model, ds.x_train[:20000] / 255.0, ds.y_train[:20000], epochs=1,
                                      progress=False, initial_ranges=initial)
    out["qat_1_epoch"] = accuracies(finetuned, learned)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="measure just this model")
    parser.add_argument("--fmnist-subnet", help="the searched Fashion-MNIST winner (.keras)")
    args = parser.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("models", {})
    results["command"] = "benchmarks/convert.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results["machine"] = platform.platform()
    todo = [(n, b) for n, b in _models(args.fmnist_subnet)
            if (not args.only or n == args.only) and n not in results["models"]]
    for name, build in tqdm(todo, desc="convert benchmark", unit="model"):
        results["models"][name] = measure(build())
        write_json(RESULTS, results)
        print(name, json.dumps(results["models"][name]))
    if (not args.only or args.only == "accuracy") and "accuracy" not in results:
        results["accuracy"] = measure_accuracy()
        print("accuracy", json.dumps(results["accuracy"]))
    write_json(RESULTS, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
