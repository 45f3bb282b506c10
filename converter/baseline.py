"""The comparison point: the same subnet through TFLiteConverter's int8 path.

Builtin ops only, batch 1 and static shapes (the static ViT already avoids the
GELU builtin and 5-D slices), int8 input/output with the project's fixed input
quantization, so TFLM's reference kernels load and run it. Its arena is
measured with the tflite-micro wheel's interpreter (host build: 8-byte
pointers, so its tail is larger than on a Cortex-M).
"""
from __future__ import annotations

import ctypes
import os
import re
import tempfile

import numpy as np

import common  # noqa: F401  (TF_USE_LEGACY_KERAS before tensorflow)
from common.errors import UserError

ARENA_PROBE_BYTES = 64 << 20


# MLP activations TFLM's builtin kernels run. It has no GELU (nor ERF) kernel, so the baseline
# of a model whose MLP uses the erf or tanh GELU (an imported tf_keras ViT) runs
# x * sigmoid(1.702 x) (LOGISTIC, MUL) in its place: same tensors, same arena role.
BUILTIN_ACTIVATIONS = ("gelu_sigmoid", "relu", "swish")


def builtin_substitutes(model) -> dict:
    """{MLP layer name: its activation} of the layers the baseline runs as x * sigmoid(1.702 x)."""
    return {l.name: l.activation for l in model.layers
            if type(l).__name__ == "MlpBlock" and l.activation not in BUILTIN_ACTIVATIONS}


def _builtin_runnable(model):
    substitutes = builtin_substitutes(model)
    if not substitutes:
        return model
    import tf_keras as keras

    from keras_supernet.static_vit import CUSTOM_OBJECTS

    clone = keras.Model.from_config(_substituted_config(model.get_config(), substitutes),
                                    custom_objects=CUSTOM_OBJECTS)
    clone.set_weights(model.get_weights())
    return clone


def _substituted_config(config, substitutes) -> dict:
    for layer in config["layers"]:
        if layer["config"].get("name") in substitutes:
            layer["config"]["activation"] = "gelu_sigmoid"
    return config


def convert_builtin(model, calib_images, samples: int = 100) -> bytes:
    """int8 builtin-op flatbuffer of a static ViT; `calib_images` are float pixels / 255
    (an activation TFLM cannot run is replaced, see BUILTIN_ACTIVATIONS)."""
    import tensorflow as tf

    model = _builtin_runnable(model)

    shape = (1,) + tuple(model.input_shape[1:])
    fn = tf.function(lambda images: model(images, training=False),
                     input_signature=[tf.TensorSpec(shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    images = np.asarray(calib_images[:samples], np.float32)

    def representative():
        for image in images:
            yield [image[None]]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # the converter reports failures as assorted exception types
        raise UserError(f"TFLiteConverter could not convert the builtin baseline: {str(exc).splitlines()[0]}") \
            from None


def _interpreter(tflite: bytes, arena_size: int = ARENA_PROBE_BYTES):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(tflite, arena_size=arena_size)


def tflm_arena(tflite: bytes) -> dict:
    """TFLM's measured arena of a builtin model: {total, head, tail} bytes (host build)."""
    interpreter = _interpreter(tflite)
    with tempfile.TemporaryFile() as log:
        saved = [os.dup(fd) for fd in (1, 2)]
        try:
            for fd in (1, 2):
                os.dup2(log.fileno(), fd)
            interpreter.print_allocations()
            ctypes.CDLL(None).fflush(None)          # TFLM prints through C stdio (to stderr)
        finally:
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
        log.seek(0)
        text = log.read().decode(errors="replace")
    found = {key: int(n) for key, n in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    if set(found) != {"total", "head", "tail"}:
        raise RuntimeError(f"unexpected TFLM allocation report: {text[:200]!r}")
    return found


def planned_arena(tflite: bytes, pointer_size: int = 4) -> int:
    """The memory model's arena (head + tail) of a builtin model for a target pointer size
    (4 = Cortex-M); the wheel only measures the host build."""
    from memory_model.tflite_graph import plan_graph, read_tflite

    return plan_graph(read_tflite(tflite), pointer_size).arena_bytes


def run_builtin(tflite: bytes, images_q) -> np.ndarray:
    """int8 outputs of the builtin model in TFLM, one image at a time."""
    interpreter = _interpreter(tflite)
    out = []
    for image in np.asarray(images_q, np.int8):
        interpreter.set_input(image[None], 0)
        interpreter.invoke()
        out.append(np.array(interpreter.get_output(0)).reshape(-1))
    return np.stack(out)
