"""The tf_keras ViT supernet: low-rank dense layers, patch-size choices, subnet export."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
