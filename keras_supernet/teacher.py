"""A small CNN teacher for distillation into a subnet's final training (DeiT-style,
from a convolutional teacher): the "2-conv CNN under 100K parameters" of the
Fashion-MNIST benchmark page, with the subnet's input shape and classes.

conv 3x3x32 - maxpool - conv 3x3x64 - maxpool - dropout 0.3 - dense: 50,186
parameters at 28x28x1 and 10 classes. It trains with `finetune_subnet` (the same
recipe, step floor and best-validation rule as a subnet) and takes float images in
[0, 1] like every model here.
"""
from __future__ import annotations

import tf_keras as keras


def build_cnn_teacher(image_size: int, channels: int, num_classes: int, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential([
        layers.Input((image_size, image_size, channels)),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPool2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPool2D(),
        layers.Flatten(), layers.Dropout(0.3), layers.Dense(num_classes),
    ], name="cnn_teacher")


def cnn_teacher_macs(image_size: int, channels: int, num_classes: int) -> int:
    """Multiply-accumulates per image of build_cnn_teacher (SAME convolutions, 2x2 pools)."""
    half, quarter = image_size // 2, image_size // 4
    return (image_size ** 2 * 32 * 9 * channels + half ** 2 * 64 * 9 * 32 + quarter ** 2 * 64 * num_classes)
