"""A ViT written with ordinary tf_keras layers, trained briefly on Fashion-MNIST.

    python examples/byo_vit/my_vit.py      # writes my_vit.keras
"""
import tf_keras as keras
from tf_keras import layers

from my_layers import AddPosition


def build(classes=10):
    inp = keras.Input((28, 28, 1))                                    # float pixels / 255
    x = layers.Reshape((16, 64))(layers.Conv2D(64, 7, strides=7)(inp))   # 7x7 patches
    x = AddPosition()(x)
    for _ in range(2):
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        x = x + layers.MultiHeadAttention(4, 16)(h, h)
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        x = x + layers.Dense(64)(layers.Dense(128, activation="gelu")(h))
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization(epsilon=1e-6)(x))
    return keras.Model(inp, layers.Dense(classes)(x))


if __name__ == "__main__":
    from common.datasets import load_fashion_mnist    # or your own images and labels

    data = load_fashion_mnist()
    model = build()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.fit(data.x_train / 255.0, data.y_train, epochs=3, batch_size=64)
    model.save("my_vit.keras")
