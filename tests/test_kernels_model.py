"""The kernels inside a stock TFLM MicroInterpreter: converted custom-op models on the host
runner give the numpy reference's logits byte for byte, with the converter's offline plan
placing the image and every token tensor at one offset (in-place token overwriting)."""
from __future__ import annotations

import numpy as np
import pytest

from converter.interpreter import run_tflite
from converter.convert import ConvertOptions, quantize_model
from converter.qmodel import quantize_images
from converter.tflite_writer import to_flatbuffer
from keras_supernet.arch import ArchConfig
from keras_supernet.static_vit import build_vit
from tests.tflm_fixtures import arm_or_skip, tflm_root_or_skip

pytestmark = pytest.mark.tflm

CONFIGS = {
    "mean-mixed-rank": ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=48, num_classes=10,
                                  num_heads=(2, 3), qkv_dim=(48, 36), mlp_hidden=(96, 64),
                                  qkv_rank=(0, 12), proj_rank=(8, 0), fc1_rank=(0, 16), fc2_rank=(10, 0),
                                  pool="mean"),
    "cls-full-rank": ArchConfig(image_size=28, channels=1, patch_size=4, embed_dim=20, num_classes=10,
                                num_heads=(1,), qkv_dim=(16,), mlp_hidden=(40,), pool="cls"),
    # sequence pooling (SPEC 2.4, pool 2): the head weights the tokens by a softmax of learned scores
    "seq-pool": ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=24, num_classes=10,
                           num_heads=(2,), qkv_dim=(24,), mlp_hidden=(48,), qkv_rank=(6,), pool="seq"),
    # the convolutional tokenizer (SPEC 2.1): 7x7 windows of stride 4, tokens over the image in place
    "conv-tokenizer": ArchConfig(image_size=28, channels=1, patch_size=4, patch_kernel=7, embed_dim=24,
                                 num_classes=10, num_heads=(2,), qkv_dim=(24,), mlp_hidden=(48,), fc1_rank=(8,)),
}


def _converted(name, fashion_mnist, tmp_path):
    """The custom-op .tflite of a random-weight ViT calibrated on 64 images."""
    model = build_vit(CONFIGS[name])
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.1, weight.shape))
    _, _, qmodel, _ = quantize_model(model, fashion_mnist.x_train[:64] / 255.0, ConvertOptions(),
                                     progress=False)
    activations = [i for i, t in enumerate(qmodel.tensors) if t.data is None]
    token_offsets = {qmodel.offsets[i] for i in activations[:-1]}     # image and every token tensor
    assert token_offsets == {0}, qmodel.offsets[:len(activations)]
    path = tmp_path / "model.tflite"
    path.write_bytes(to_flatbuffer(qmodel))
    return path


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_custom_op_model_in_tflm_equals_reference(name, fashion_mnist, tmp_path):
    from deploy.host import run_host
    root = tflm_root_or_skip()
    path = _converted(name, fashion_mnist, tmp_path)
    images = quantize_images(np.asarray(fashion_mnist.x_test[:24], np.float64) / 255.0)
    expected = run_tflite(path, images).reshape(len(images), -1)
    got = run_host(root, path, images).outputs
    assert got.shape == expected.shape
    assert int(np.count_nonzero(got != expected)) == 0
    assert len(np.unique(got, axis=0)) > 1


@pytest.mark.slow
def test_custom_op_model_on_cortex_m7_equals_reference(fashion_mnist, tmp_path):
    """The CMSIS-NN kernels in the example app under QEMU mps2-an500 (Cortex-M7)."""
    from deploy import app, qemu
    root = tflm_root_or_skip()
    arm_or_skip()
    images = quantize_images(np.asarray(fashion_mnist.x_test[:4], np.float64) / 255.0)
    for name in ("mean-mixed-rank", "conv-tokenizer"):
        (tmp_path / name).mkdir()
        path = _converted(name, fashion_mnist, tmp_path / name)
        spec = app.AppSpec(app.model_array_cc(path, tmp_path / name), arena_bytes=64 * 1024, images=images,
                           labels=fashion_mnist.y_test[:4])
        output, _ = qemu.run_qemu(app.build_app(root, "qemu-m7", spec, tmp_path / name / "app.elf"))
        expected = run_tflite(path, images).reshape(len(images), -1)
        assert int(np.count_nonzero(output.outputs != expected)) == 0, name
