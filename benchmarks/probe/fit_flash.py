"""Refit the flatbuffer overhead constants of memory_model/memory.py (FB_*) against the
converter's writer: writes models for a few subnets (three with stem layers) and solves least
squares.

    .venv/bin/python benchmarks/probe/fit_flash.py
"""
import numpy as np

import common  # noqa: F401  (TF_USE_LEGACY_KERAS before tensorflow)
from converter.convert import quantize_model
from converter.tflite_writer import to_flatbuffer
from keras_supernet.arch import ArchConfig
from keras_supernet.space import SearchSpace
from keras_supernet.static_vit import build_vit
from memory_model.memory import constant_tensors


def main():
    rng = np.random.default_rng(0)
    space = SearchSpace.load("configs/spaces/fmnist.yaml")
    configs = [space.sample(rng) for _ in range(6)] + [space.largest(), space.smallest()]
    configs.append(ArchConfig(image_size=32, channels=3, patch_size=4, embed_dim=48, num_classes=10,
                              num_heads=[2, 3], qkv_dim=[32, 48], mlp_hidden=[96, 64], qkv_rank=[8, 0],
                              fc2_rank=[0, 16], pool="cls"))
    configs += [configs[0].replace(stem=[[3, 2, 16]], image_size=2 * configs[0].image_size),
                configs[1].replace(stem=[[3, 1, 8], [3, 2, 24]], image_size=2 * configs[1].image_size),
                configs[-1].replace(stem=[[4, 2, 12]], image_size=64)]
    rows, sizes = [], []
    for config in configs:
        images = rng.random((16, config.image_size, config.image_size, config.channels))
        _, _, qmodel, _ = quantize_model(build_vit(config), images, progress=False)
        consts = constant_tensors(config)
        data = sum((b + 15) // 16 * 16 for b, _ in consts)
        stem = len(config.stem)
        rows.append([len(consts) - 3 * stem, 2 * config.depth + 2, stem, 1])
        sizes.append(len(to_flatbuffer(qmodel)) - data)
    coef = np.round(np.linalg.lstsq(np.array(rows, float), np.array(sizes, float), rcond=None)[0])
    residual = np.array(sizes) - np.array(rows) @ coef
    print(f"FB_PER_CONSTANT = {coef[0]:.0f}\nFB_PER_OP = {coef[1]:.0f}\nFB_PER_STEM_LAYER = {coef[2]:.0f}\n"
          f"FB_FIXED = {coef[3]:.0f}")
    print(f"residuals (bytes): {residual.astype(int).tolist()}")


if __name__ == "__main__":
    main()
