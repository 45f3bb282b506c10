"""Stock tf_keras ViTs written with ordinary layers (no project code), for the
bring-your-own-ViT tests and benchmark, and models the importer must reject."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

from tests.byo_layers import ClassTokenPosition, PatchEncoder, Patches, PositionEmbedding


def _block(x, heads, key_dim, hidden, activation="gelu", eps=1e-6, dropout=0.0):
    h = layers.LayerNormalization(epsilon=eps)(x)
    h = layers.MultiHeadAttention(heads, key_dim, dropout=dropout)(h, h)
    h = layers.Dropout(dropout)(h)
    x = layers.Add()([x, h])
    h = layers.LayerNormalization(epsilon=eps)(x)
    h = layers.Dense(hidden, activation=activation)(h)
    h = layers.Dropout(dropout)(h)
    h = layers.Dense(x.shape[-1])(h)
    return layers.Add()([x, h])


def conv_cls_gelu(seed=0) -> keras.Model:
    """Conv2D patches (7x7), class token prepended, heads 1 and 4, GELU (erf), class-token pooling."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = layers.Reshape((16, 32))(layers.Conv2D(32, 7, strides=7)(inp))
    x = ClassTokenPosition()(x)
    x = _block(x, heads=1, key_dim=16, hidden=64)
    x = _block(x, heads=4, key_dim=8, hidden=64)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    return keras.Model(inp, layers.Dense(10)(x[:, 0]), name="conv_cls_gelu")


def dense_mean_relu(seed=0) -> keras.Model:
    """Patches reshaped and projected by Dense (7x7), position embedding, 2 heads, relu, mean pooling."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = layers.Reshape((4, 7, 4, 7, 1))(inp)
    x = layers.Permute((1, 3, 2, 4, 5))(x)
    x = layers.Dense(32)(layers.Reshape((16, 49))(x))
    x = PositionEmbedding()(x)
    x = _block(x, heads=2, key_dim=16, hidden=96, activation="relu")
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization(epsilon=1e-6)(x))
    return keras.Model(inp, layers.Dense(10)(x), name="dense_mean_relu")


def rescaled_tanh_softmax(seed=0) -> keras.Model:
    """Raw pixels rescaled inside, Conv2D patches (4x4, 49 tokens), 3 heads, tf.nn.gelu(approximate=True)
    as its own call, tf_keras' default LayerNorm epsilon, dropout, reduce_mean pooling, softmax head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(24, 4, strides=4)(layers.Rescaling(1.0 / 255)(inp))
    x = PositionEmbedding()(layers.Reshape((49, 24))(x))
    for _ in range(2):
        h = layers.LayerNormalization()(x)
        h = layers.MultiHeadAttention(3, 8, dropout=0.1)(h, h)
        x = layers.Add()([x, layers.Dropout(0.1)(h)])
        h = layers.LayerNormalization()(x)
        h = tf.nn.gelu(layers.Dense(48)(h), approximate=True)
        x = x + layers.Dense(24)(layers.Dropout(0.1)(h))
    x = tf.reduce_mean(layers.LayerNormalization()(x), axis=1)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x), name="rescaled_tanh_softmax")


def keras_io_style(seed=0) -> keras.Model:
    """keras-io's ViT example's structure (Patches + PatchEncoder custom layers, dropout), with what the
    converter needs instead of its two departures: a linear second MLP Dense and a pooled head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = PatchEncoder(16, 32)(Patches(7)(inp))
    for _ in range(2):
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        h = layers.MultiHeadAttention(num_heads=4, key_dim=32, dropout=0.1)(h, h)
        x = layers.Add()([h, x])
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        h = layers.Dropout(0.1)(layers.Dense(64, activation=tf.nn.gelu)(h))
        x = layers.Add()([layers.Dropout(0.1)(layers.Dense(32)(h)), x])
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization(epsilon=1e-6)(x))
    return keras.Model(inp, layers.Dense(10)(layers.Dropout(0.5)(x)), name="keras_io_style")


def conv_mean_relu(seed=0) -> keras.Model:
    """Conv2D patches (4x4, 49 tokens), position embedding, 2 blocks of 2 heads, relu, mean pooling:
    only ops TFLM's builtin kernels have, so TFLiteConverter's model of it runs in TFLM too."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = PositionEmbedding()(layers.Reshape((49, 32))(layers.Conv2D(32, 4, strides=4)(inp)))
    x = _block(x, heads=2, key_dim=16, hidden=64, activation="relu")
    x = _block(x, heads=2, key_dim=16, hidden=64, activation="relu")
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization(epsilon=1e-6)(x))
    return keras.Model(inp, layers.Dense(10)(x), name="conv_mean_relu")


# raw-pixel input and probabilities out for the last one
STOCK_MODELS = {"conv_cls_gelu": (conv_cls_gelu, 1.0, True), "dense_mean_relu": (dense_mean_relu, 1.0, True),
                "rescaled_tanh_softmax": (rescaled_tanh_softmax, 255.0, False)}
BUILTIN_FRIENDLY = {"conv_mean_relu": (conv_mean_relu, 1.0, True)}


def train(model, dataset, images=4000, epochs=1, input_scale=1.0, from_logits=True, seed=0):
    """A short Adam run on the first `images` training images (float pixels / 255 * input_scale)."""
    keras.utils.set_random_seed(seed)
    x = dataset.x_train[:images].astype(np.float32) / 255.0 * input_scale
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    model.fit(x, dataset.y_train[:images], batch_size=64, epochs=epochs, verbose=0)
    return model


# ---- models the importer rejects (untrained: the pattern is what matters) -------------------

def _stem(inp, p=7, e=32):
    return layers.Reshape(((28 // p) ** 2, e), name="to_tokens")(layers.Conv2D(e, p, strides=p, name="patches")(inp))


def batchnorm_in_block() -> keras.Model:
    inp = keras.Input((28, 28, 1))
    x = _stem(inp)
    h = layers.LayerNormalization()(x)
    x = layers.Add()([x, layers.MultiHeadAttention(2, 16)(h, h)])
    h = layers.Dense(64, activation="gelu")(layers.LayerNormalization()(x))
    h = layers.BatchNormalization(name="bn_in_block")(h)
    x = layers.Add()([x, layers.Dense(32)(h)])
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization()(x))
    return keras.Model(inp, layers.Dense(10)(x))


def conv_after_patches() -> keras.Model:
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(32, 7, strides=7, name="patches")(inp)
    x = layers.Conv2D(32, 3, padding="same", name="conv_after")(x)
    x = layers.Reshape((16, 32))(x)
    x = _block(x, 2, 16, 64)
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization()(x))
    return keras.Model(inp, layers.Dense(10)(x))


def post_norm() -> keras.Model:
    inp = keras.Input((28, 28, 1))
    x = _stem(inp)
    x = layers.LayerNormalization()(layers.Add()([x, layers.MultiHeadAttention(2, 16, name="post_mha")(x, x)]))
    h = layers.Dense(32)(layers.Dense(64, activation="gelu")(x))
    x = layers.LayerNormalization()(layers.Add()([x, h]))
    return keras.Model(inp, layers.Dense(10)(layers.GlobalAveragePooling1D()(x)))


def gelu_on_both_dense() -> keras.Model:
    """keras-io's ViT MLP: gelu after both Dense layers."""
    inp = keras.Input((28, 28, 1))
    x = _stem(inp)
    h = layers.LayerNormalization()(x)
    x = layers.Add()([x, layers.MultiHeadAttention(2, 16)(h, h)])
    h = layers.Dense(64, activation="gelu")(layers.LayerNormalization()(x))
    x = layers.Add()([x, layers.Dense(32, activation="gelu", name="fc2_gelu")(h)])
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization()(x))
    return keras.Model(inp, layers.Dense(10)(x))


def elu_mlp() -> keras.Model:
    inp = keras.Input((28, 28, 1))
    x = _stem(inp)
    h = layers.LayerNormalization()(x)
    x = layers.Add()([x, layers.MultiHeadAttention(2, 16)(h, h)])
    h = layers.Dense(64, activation="elu", name="fc1_elu")(layers.LayerNormalization()(x))
    x = layers.Add()([x, layers.Dense(32)(h)])
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization()(x))
    return keras.Model(inp, layers.Dense(10)(x))


def flatten_head() -> keras.Model:
    """keras-io's head: the tokens flattened into the classifier."""
    inp = keras.Input((28, 28, 1))
    x = _block(_stem(inp), 2, 16, 64)
    x = layers.Flatten(name="flat")(layers.LayerNormalization()(x))
    return keras.Model(inp, layers.Dense(10)(x))


REJECTED = {  # builder: (layer named in the error, its type)
    "batchnorm_in_block": (batchnorm_in_block, "bn_in_block", "BatchNormalization"),
    "conv_after_patches": (conv_after_patches, "conv_after", "Conv2D"),
    "post_norm": (post_norm, "post_mha", "MultiHeadAttention"),
    "gelu_on_both_dense": (gelu_on_both_dense, "fc2_gelu", "Dense"),
    "elu_mlp": (elu_mlp, "fc1_elu", "Dense"),
    "flatten_head": (flatten_head, "flat", "Flatten"),
}
