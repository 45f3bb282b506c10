"""MCUFormer-TFLM: shared plumbing (CLI, data, boards, budgets, atomic output).

Importing any project package sets TF_USE_LEGACY_KERAS=1 before TensorFlow
loads, so TFMOT and `tf.keras` resolve to tf_keras (Keras 2) for the user.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
