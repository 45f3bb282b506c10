"""int8 quantization and the TFLite flatbuffer writer with this project's custom ops."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
