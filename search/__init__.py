"""Evolutionary search of subnets under a board budget, and search-space evolution (S3 / E-T error)."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
