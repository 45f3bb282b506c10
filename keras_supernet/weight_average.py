"""Exponential moving average (EMA) of a model's trainable weights, for fine-tuning.

The average is what gets validated (and so what the best-checkpoint rule keeps); training
continues on the raw weights. The decay ramps up as min(decay, (1 + n) / (10 + n)) over
optimizer step n, so a short run is not dominated by its starting weights."""
from __future__ import annotations

import contextlib

import tensorflow as tf
import tf_keras as keras


class WeightAverage(tf.Module):
    def __init__(self, model: keras.Model, decay: float):
        super().__init__(name="ema")
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averages = [tf.Variable(w, trainable=False) for w in model.trainable_variables]

    def update(self, model: keras.Model, step) -> None:
        """Fold the current weights in; `step` is the optimizer's step count after this update."""
        n = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for average, w in zip(self.averages, model.trainable_variables):
            average.assign(decay * average + (1.0 - decay) * w)

    @contextlib.contextmanager
    def applied(self, model: keras.Model):
        """Within the block the model holds the averaged weights; its own come back after."""
        raw = [tf.identity(w) for w in model.trainable_variables]
        for w, average in zip(model.trainable_variables, self.averages):
            w.assign(average)
        try:
            yield model
        finally:
            for w, kept in zip(model.trainable_variables, raw):
                w.assign(kept)
