"""Shared fixtures of the TFLM build/runner tests: the tree, a builtin int8 model."""
from __future__ import annotations

import shutil

import numpy as np
import pytest


def tflm_root_or_skip():
    from deploy import tflm
    root = tflm.find_tflm()
    if root is None:
        pytest.skip(tflm.missing_reason())
    return root


def arm_or_skip():
    missing = [t for t in ("arm-none-eabi-g++", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install gcc-arm-none-eabi "
                    f"libnewlib-arm-none-eabi qemu-system-arm)")


def builtin_int8_model(seed: int = 0) -> bytes:
    """A small int8 builtin-op graph (patch conv, residual dense, mean pool, head) from TFLiteConverter."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1), batch_size=1)
    x = keras.layers.Conv2D(8, 4, strides=4)(inp)
    x = keras.layers.Reshape((49, 8))(x)
    x = keras.layers.Add()([x, keras.layers.Dense(8, activation="relu")(x)])
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inp, keras.layers.Dense(10)(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(seed)
    converter.representative_dataset = lambda: ([rng.random((1, 28, 28, 1), np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def int8_images(dataset, n: int) -> np.ndarray:
    from tflm_ops.contract import quantize_input
    return quantize_input(dataset.x_test[:n])
