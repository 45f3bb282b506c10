"""Shared by the deployment-package tests: a small converted ViT and its reference logits."""
import numpy as np


def converted_model(root, fashion_mnist):
    """A small ViT converted into root/model (untrained: the packages must match the reference, not labels)."""
    from converter.convert import ConvertOptions, convert
    from keras_supernet.arch import ArchConfig
    from keras_supernet.static_vit import build_vit

    config = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=16, num_classes=10,
                        num_heads=[2], qkv_dim=[16], mlp_hidden=[32], fc1_rank=[4])
    build_vit(config).save(root / "subnet.keras")
    convert(root / "subnet.keras", root / "model", fashion_mnist,
            ConvertOptions(calib=32, eval_images=50, baseline=False), progress=False)
    return root / "model"


def reference_logits(model_dir, fashion_mnist, n: int) -> np.ndarray:
    """The numpy reference's int8 logits of the first n test images (pixels - 128)."""
    from converter.interpreter import run_tflite

    x = (fashion_mnist.x_test[:n].astype(np.int16) - 128).astype(np.int8)
    return np.asarray(run_tflite(model_dir / "model.tflite", x.reshape(n, 28, 28, 1)))
