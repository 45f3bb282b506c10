"""`--rank` / `--rank-ratio`: factorise each block linear of a static ViT by truncated SVD.

W (in x out) ~ V (in x r) . U (r x out) with V = A_r sqrt(S_r), U = sqrt(S_r) B_r
(W = A S B), the balanced split, so both factors quantize alike. The patch
embedding and the head stay full rank (ArchConfig has no rank for them).
"""
from __future__ import annotations

import numpy as np

from common.errors import UserError
from keras_supernet.arch import LINEARS

from .float_model import dense_kernel, read_weights
from .static_weights import static_model


def choose_rank(n_in: int, n_out: int, rank: int = 0, ratio: float = 0.0) -> int:
    """The rank of one linear: `rank`, or the one that keeps about `ratio` of its weights
    (r = ratio * in * out / (in + out)); 0 (full rank) where factorising saves nothing."""
    r = rank if rank else int(ratio * n_in * n_out / (n_in + n_out))
    r = max(1, min(r, n_in, n_out))
    return 0 if r * (n_in + n_out) >= n_in * n_out else r


def layer_options(model) -> dict:
    """The static layers' constructor extras (activation, LayerNorm epsilon) by layer name."""
    out = {}
    for layer in model.layers:
        extra = {k: getattr(layer, k) for k in ("norm_epsilon", "activation") if hasattr(layer, k)}
        if extra and type(layer).__name__ in ("AttentionBlock", "MlpBlock", "ClassifierHead"):
            out[layer.name] = extra
    return out


def factorise(model, rank: int = 0, ratio: float = 0.0) -> tuple:
    """(static ViT with the chosen ranks, {"block<i>.<linear>": rank}) of a static ViT."""
    if rank < 0 or not 0.0 <= ratio < 1.0 or (rank and ratio):
        raise UserError(f"pass --rank R (R >= 1) or --rank-ratio F (0 < F < 1), not both; got {rank}, {ratio}")
    arch, weights = read_weights(model)
    ranks = {f"{lin}_rank": [0] * arch.depth for lin in LINEARS}
    chosen = {}
    for i in range(arch.depth):
        for lin in LINEARS:
            block = f"block{i}_{'attn' if lin in ('qkv', 'proj') else 'mlp'}"
            r = choose_rank(*arch.linear_shape(i, lin), rank=rank, ratio=ratio)
            chosen[f"block{i}.{lin}"] = r
            w = weights[block][lin]
            if r == 0:
                ranks[f"{lin}_rank"][i] = arch.rank(i, lin)      # an already low-rank linear stays as it is
                continue
            a, s, b = np.linalg.svd(dense_kernel(w), full_matrices=False)
            root = np.sqrt(s[:r])
            weights[block][lin] = {"v": a[:, :r] * root, "u": root[:, None] * b[:r], "bias": w["bias"]}
            ranks[f"{lin}_rank"][i] = r
    factored = static_model(arch.replace(**ranks), weights, layer_options(model), name=model.name)
    return factored, chosen
