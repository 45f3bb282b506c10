"""A static ViT (keras_supernet.static_vit) holding given float weights: the inverse of
float_model.read_weights, used by the importer and by low-rank factorisation."""
from __future__ import annotations

import numpy as np


def static_model(arch, weights, layer_options=None, name="vit"):
    """A static ViT for `arch` holding `weights` (float_model.read_weights' layout)."""
    from keras_supernet.static_vit import build_vit

    model = build_vit(arch, name=name, layer_options=layer_options)
    write_weights(model, weights)
    return model


def _assign(layer, values: dict) -> None:
    variables = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
    for name, value in values.items():
        if value is None:
            continue
        var = variables[name]
        value = np.asarray(value, np.float32)
        if tuple(var.shape) != value.shape:
            raise ValueError(f"{layer.name}/{name}: shape {value.shape} for a {tuple(var.shape)} weight")
        var.assign(value)


def _linear_values(prefix, lin) -> dict:
    out = {f"{prefix}_bias": lin["bias"]}
    if "kernel" in lin:
        out[f"{prefix}_kernel"] = lin["kernel"]
    else:
        out[f"{prefix}_v"], out[f"{prefix}_u"] = lin["v"], lin["u"]
    return out


def write_weights(model, weights) -> None:
    """Set a static ViT's weights from float_model.read_weights' layout (the inverse of read_weights)."""
    for name, w in weights.items():
        layer = model.get_layer(name)
        values = {}
        if name == "patch_embed":
            values = {k: w[k] for k in ("kernel", "bias", "pos", "cls")}
        elif name.startswith("stem"):
            values = {"kernel": w["kernel"], "bias": w["bias"]}
        else:
            values = {"norm_gamma": w["norm"][0], "norm_beta": w["norm"][1]}
            for lin in ("qkv", "proj", "fc1", "fc2", "fc"):
                if lin in w:
                    values.update(_linear_values(lin, w[lin]))
        _assign(layer, values)
