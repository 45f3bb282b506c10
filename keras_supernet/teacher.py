"""CNN teachers for distillation into a subnet's final training (DeiT-style, from a
convolutional teacher). They train with `finetune_subnet` (the subnet's recipe, step floor
and best-validation rule) and take float images in [0, 1] like every model here.

- `cnn2`: the "2-conv CNN under 100K parameters" of the Fashion-MNIST benchmark page, the
  benchmark's CNN reference: conv 3x3x32 - maxpool - conv 3x3x64 - maxpool - dropout 0.3 -
  dense (50,186 parameters at 28x28x1, 10 classes).
- `cnn4`: a stronger teacher, kept apart from that reference: conv 32 - pool - conv 64 -
  conv 64 - pool - conv 128 - pool - dropout 0.3 - dense, each conv 3x3 with batch norm
  (141,994 parameters at 28x28x1). A student is bounded by its teacher: cnn2 stops near the
  accuracy the students are asked to beat.
"""
from __future__ import annotations

import tf_keras as keras

TEACHER_ARCHS = {"cnn2": "2-conv CNN", "cnn4": "4-conv CNN with batch norm"}


def build_teacher(arch: str, image_size: int, channels: int, num_classes: int, seed: int = 0) -> keras.Model:
    if arch not in TEACHER_ARCHS:
        raise ValueError(f"unknown teacher {arch!r}; choose from {', '.join(TEACHER_ARCHS)}")
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    if arch == "cnn2":
        return keras.Sequential([
            layers.Input((image_size, image_size, channels)),
            layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPool2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPool2D(),
            layers.Flatten(), layers.Dropout(0.3), layers.Dense(num_classes),
        ], name="cnn_teacher")

    def conv_bn(width):
        return [layers.Conv2D(width, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU()]

    return keras.Sequential([
        layers.Input((image_size, image_size, channels)),
        *conv_bn(32), layers.MaxPool2D(),
        *conv_bn(64), *conv_bn(64), layers.MaxPool2D(),
        *conv_bn(128), layers.MaxPool2D(),
        layers.Flatten(), layers.Dropout(0.3), layers.Dense(num_classes),
    ], name="cnn4_teacher")


def build_cnn_teacher(image_size: int, channels: int, num_classes: int, seed: int = 0) -> keras.Model:
    """The benchmark's CNN reference (`cnn2`)."""
    return build_teacher("cnn2", image_size, channels, num_classes, seed)


def model_macs(model: keras.Model) -> int:
    """Multiply-accumulates per image of a built model's Conv2D and Dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output_shape
            total += h * w * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return int(total)
