"""The custom-op contract (SPEC.md), its numpy integer reference, and the TFLM C++ kernels (src/)."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
