"""The one memory model of a TFLM deployment: arena (head plan + persistent tail), flash, MACs."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
