"""Measure CODE_FLASH_BYTES of memory_model/memory.py: the STM32F746 example app (TFLM +
CMSIS-NN + this project's kernels, --gc-sections) minus its model array and
embedded test images, for two different models (the difference must be 0); and
the app's RAM beyond its static arena (.data + .bss - arena).

    .venv/bin/python benchmarks/probe/measure_code_flash.py
"""
import tempfile
from pathlib import Path

import numpy as np

import common  # noqa: F401  (TF_USE_LEGACY_KERAS before tensorflow)
from converter.convert import quantize_model
from converter.tflite_writer import to_flatbuffer
from keras_supernet.arch import ArchConfig
from keras_supernet.static_vit import build_vit
from common.boards import load_board
from memory_model.memory import custom_graph_plan
from deploy import app, tflm

CONFIGS = [ArchConfig(image_size=28, channels=1, patch_size=4, embed_dim=64, num_classes=10,
                      num_heads=[2, 2], qkv_dim=[64, 64], mlp_hidden=[128, 128]),
           ArchConfig(image_size=32, channels=3, patch_size=4, embed_dim=48, num_classes=10, num_heads=[1, 3],
                      qkv_dim=[16, 48], mlp_hidden=[96, 64], qkv_rank=[8, 0], fc1_rank=[0, 16], pool="cls")]


def main():
    root = tflm.find_tflm()
    if root is None:
        raise SystemExit(tflm.missing_reason())
    rng = np.random.default_rng(0)
    for config in CONFIGS:
        images = rng.random((8, config.image_size, config.image_size, config.channels))
        _, _, qmodel, _ = quantize_model(build_vit(config), images, progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "model.tflite"
            model.write_bytes(to_flatbuffer(qmodel))
            test = np.zeros((1, config.image_size, config.image_size, config.channels), np.int8)
            arena = app.arena_size(custom_graph_plan(config).required_arena_bytes(4))
            spec = app.AppSpec(app.model_array_cc(model, Path(tmp)), arena, test, np.zeros(1, int))
            elf = app.build_app(root, "stm32f746", spec, Path(tmp) / "app.elf", board=load_board("stm32f746"))
            sizes = app.section_sizes(elf)
            code = sizes["flash"] - model.stat().st_size - test.nbytes
            print(f"{config.describe()}: .text+.data {sizes['flash']} B, model {model.stat().st_size} B, "
                  f"code {code} B; RAM beyond the {arena} B arena {sizes['ram'] - arena} B")


if __name__ == "__main__":
    main()
