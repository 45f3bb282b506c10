"""The `mcuformer` command line: one subcommand per pipeline stage, and the demo."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

__version__ = "0.1.0"
