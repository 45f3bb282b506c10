"""Import TensorFlow without its C++ start-up chatter on stderr.

TensorFlow's native code logs oneDNN and CUDA-probing lines before absl's
logging is initialised, so TF_CPP_MIN_LOG_LEVEL cannot silence them; they
would stand between the user and our one-line error messages.
"""
from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.constant(0)          # device discovery logs on first use
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
