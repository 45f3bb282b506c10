"""The ground floor every package stands on: errors, byte units, atomic output,
config files, datasets and board profiles.

Importing it (as every project package does first) sets TF_USE_LEGACY_KERAS=1
before TensorFlow loads, so TFMOT and `tf.keras` resolve to tf_keras (Keras 2).
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
