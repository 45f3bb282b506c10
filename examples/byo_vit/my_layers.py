"""The one custom layer of my_vit.py (Keras has no position embedding): the file
`mcuformer convert --custom-objects` imports."""
import tf_keras as keras


class AddPosition(keras.layers.Layer):
    def build(self, shape):
        self.pos = self.add_weight(name="pos", shape=(1, *shape[1:]), initializer="random_normal")

    def call(self, x):
        return x + self.pos
