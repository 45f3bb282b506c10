"""The custom layers of the stock ViTs in tests/byo_models.py, as a user would write them:
the file `mcuformer convert --custom-objects` imports."""
import tensorflow as tf
import tf_keras as keras


class ClassTokenPosition(keras.layers.Layer):
    """Prepends a learned class token and adds a learned position embedding."""

    def build(self, input_shape):
        tokens, dim = input_shape[1], input_shape[2]
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.cls = self.add_weight(name="cls", shape=(1, 1, dim), initializer=init)
        self.pos = self.add_weight(name="pos", shape=(1, tokens + 1, dim), initializer=init)

    def call(self, x):
        cls = tf.tile(self.cls, [tf.shape(x)[0], 1, 1])
        return tf.concat([cls, x], axis=1) + self.pos


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding."""

    def build(self, input_shape):
        self.pos = self.add_weight(name="pos", shape=(1,) + tuple(input_shape[1:]),
                                   initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x):
        return x + self.pos


class Patches(keras.layers.Layer):
    """keras-io's ViT example: non-overlapping patches by tf.image.extract_patches."""

    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size

    def call(self, images):
        p = self.patch_size
        patches = tf.image.extract_patches(images=images, sizes=[1, p, p, 1], strides=[1, p, p, 1],
                                           rates=[1, 1, 1, 1], padding="VALID")
        return tf.reshape(patches, [tf.shape(images)[0], -1, patches.shape[-1]])

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


class PatchEncoder(keras.layers.Layer):
    """keras-io's ViT example: a Dense projection plus an Embedding of the positions."""

    def __init__(self, num_patches, projection_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_patches, self.projection_dim = num_patches, projection_dim
        self.projection = keras.layers.Dense(projection_dim)
        self.position_embedding = keras.layers.Embedding(num_patches, projection_dim)

    def call(self, patch):
        positions = tf.expand_dims(tf.range(0, self.num_patches), axis=0)
        return self.projection(patch) + self.position_embedding(positions)

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches, "projection_dim": self.projection_dim}
