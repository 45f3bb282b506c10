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
