"""Custom-op models straight from an ArchConfig, without Keras: random float weights,
calibrated on random images and written by the converter (quantize.py, tflite_writer.py).
A model's arena and op counts do not depend on its weight values."""
from __future__ import annotations

import numpy as np

from memory_model.memory import Techniques, custom_graph_plan


def _linear(rng, n_in: int, n_out: int, rank: int) -> dict:
    out = {"bias": rng.normal(0, 0.05, n_out)}
    if rank:
        out["v"], out["u"] = rng.normal(0, n_in ** -0.5, (n_in, rank)), rng.normal(0, rank ** -0.5, (rank, n_out))
    else:
        out["kernel"] = rng.normal(0, n_in ** -0.5, (n_in, n_out))
    return out


def _norm(rng, e: int) -> tuple:
    return 1 + rng.normal(0, 0.05, e), rng.normal(0, 0.05, e)


def random_weights(config, rng) -> dict:
    """The weights dict of converter.float_model.read_weights for `config`."""
    k, c, e = config.kernel, config.stem_shapes[-1][1], config.embed_dim
    weights = {f"stem{j}": {"kernel": rng.normal(0, (kj * kj * c_in) ** -0.5, (kj, kj, c_in, c_out)),
                            "bias": rng.normal(0.05, 0.05, c_out)}
               for j, (kj, _, c_in, c_out, _) in enumerate(config.stem_layers())}
    weights["patch_embed"] = {"kernel": rng.normal(0, (k * k * c) ** -0.5, (k, k, c, e)),
                               "bias": rng.normal(0, 0.05, e), "pos": rng.normal(0, 0.02, (config.num_tokens, e)),
                               "cls": rng.normal(0, 0.02, e) if config.pool == "cls" else None}
    for i in range(config.depth):
        weights[f"block{i}_attn"] = {"norm": _norm(rng, e), **{
            name: _linear(rng, *config.linear_shape(i, name), config.rank(i, name)) for name in ("qkv", "proj")}}
        weights[f"block{i}_mlp"] = {"norm": _norm(rng, e), **{
            name: _linear(rng, *config.linear_shape(i, name), config.rank(i, name)) for name in ("fc1", "fc2")}}
    weights["head"] = {"norm": _norm(rng, e), "fc": _linear(rng, e, config.num_classes, 0)}
    if config.pool == "seq":
        weights["head"]["score"] = _linear(rng, e, 1, 0)
    return weights


def custom_model(config, techniques: Techniques = Techniques(), seed: int = 0, calib: int = 4) -> bytes:
    """The converter's model.tflite for `config` with random weights, its offline plan
    made with `techniques`."""
    from converter.convert import ConvertOptions, calibrated_ranges
    from converter.quantize import build_qmodel
    from converter.tflite_writer import to_flatbuffer

    rng = np.random.default_rng(seed)
    weights = random_weights(config, rng)
    images = rng.random((calib, config.image_size, config.image_size, config.channels))
    ranges = calibrated_ranges(config, weights, images, ConvertOptions(), progress=False)
    qmodel = build_qmodel(config, weights, ranges)
    offsets = custom_graph_plan(config, techniques).tensor_offsets
    qmodel.offsets = list(offsets) + [-1] * (len(qmodel.tensors) - len(offsets))
    return to_flatbuffer(qmodel)
