"""Memory model (SRAM arena, flash, MACs), evolutionary search and search-space evolution."""
import mcuformer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
