"""Deployment tooling: TFLM builds, the example app, host/QEMU runs, verify and packages."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
