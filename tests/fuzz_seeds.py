"""Seed models of the load-path fuzzer (deploy/fuzz.py): a ViT shaped like the
demo's (README: 28px/p7 E48, 2 blocks, fc1 rank 16 in block 2) and the
kernel-test models (tests/test_kernels_model.py), random weights, calibrated
on 64 Fashion-MNIST images. Used by tests/test_integrity.py and benchmarks/fuzz.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEMO_LIKE = dict(image_size=28, channels=1, patch_size=7, embed_dim=48, num_classes=10, num_heads=(2, 2),
                 qkv_dim=(48, 48), mlp_hidden=(96, 96), fc1_rank=(0, 16), pool="mean")


def seed_archs() -> dict:
    from keras_supernet.arch import ArchConfig
    from tests.test_kernels_model import CONFIGS

    return {"demo-like": ArchConfig(**DEMO_LIKE), **CONFIGS}


def write_seed_model(arch, path: Path, fashion_mnist) -> Path:
    """The custom-op .tflite of `arch` with random weights."""
    from converter.convert import ConvertOptions, quantize_model
    from converter.tflite_writer import to_flatbuffer
    from keras_supernet.static_vit import build_vit

    model = build_vit(arch)
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.1, weight.shape))
    _, _, qmodel, _ = quantize_model(model, fashion_mnist.x_train[:64] / 255.0, ConvertOptions(), progress=False)
    path.write_bytes(to_flatbuffer(qmodel))
    return path


def write_seed_models(dest: Path, fashion_mnist) -> list:
    dest.mkdir(parents=True, exist_ok=True)
    return [write_seed_model(arch, dest / f"{name}.tflite", fashion_mnist) for name, arch in seed_archs().items()]
