"""The custom-op contract (SPEC.md), its numpy reference, and the TFLM C++ kernels."""
import mcuformer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
