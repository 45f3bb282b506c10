"""An ESTIMATE of the instructions each custom op's Eval executes on a Cortex-M7 (CMSIS-NN build).

Each op's count is a sum of per-unit figures times what the kernel does (SPEC
section 2): int8 multiply-accumulates of its linears (a low-rank qkv's first
factor twice, as the attention kernel computes it in both phases, unless it
keeps the intermediate: `keep_t`), of the attention scores and context, softmax
elements, LayerNorm elements, requantized outputs, LUT lookups, and a fixed
cost per call. The patch embedding and the attention have one set of figures
per variant (`variant`: patches or tokens per pass, the options
memory_model/memory.py chooses). The figures were fitted by
least squares to instruction counts measured under QEMU (mps2-an500, the
project's instruction-count plugin, bit-exact checked) on the shapes in
`benchmarks/op_instructions.py`, which wrote them with the fit's date and
residuals to benchmarks/results/op_instructions.json; the test suite holds
FIGURES equal to that file. A count is not a time: the latency a report
derives from it assumes one instruction per cycle.
"""
from __future__ import annotations

from tflm_ops.contract import POOL_CLS, POOL_CODES, POOL_SEQ

# figures per op variant (see variant): {feature: instructions per unit}; see features()
FIGURES = {
    "MCUF_PATCH_EMBED/4": {"linear_mac": 0.9651, "output": 84.9563, "call": 5611.4902},
    "MCUF_PATCH_EMBED/1": {"linear_mac": 1.5377, "output": 100.2726, "call": 600.5767},
    "MCUF_ATTENTION/4": {"linear_mac": 0.9057, "attention_mac": 0.5801, "softmax": 55.4077, "layer_norm": 53.0734,
                         "output": 72.2746, "call": 4170.807},
    "MCUF_ATTENTION/8": {"linear_mac": 0.8424, "attention_mac": 0.5338, "softmax": 48.0706, "layer_norm": 44.242,
                         "output": 64.2157, "call": 13006.433},
    "MCUF_MLP": {"linear_mac": 0.954, "lut": 0.0, "layer_norm": 71.1963, "output": 47.8334, "call": 6728.7448},
    "MCUF_HEAD": {"layer_norm": 61.838, "linear_mac": 0.5717, "softmax": 0.0, "call": 1645.0015},
}
# A feature added after an op's last fit borrows the figure of another op doing the same work
# (sequence pooling's softmax over tokens is the attention softmax's SoftmaxRow) until the next fit.
BORROWED = {("MCUF_HEAD", "softmax"): "MCUF_ATTENTION/4"}
MEASURED = {"date": "2026-12-01", "source": "benchmarks/results/op_instructions.json",
            "device": "QEMU mps2-an500 (Cortex-M7), cortex_m_generic cortex-m7+fp CMSIS-NN"}


def variant(op: str, options: dict) -> str:
    """The FIGURES key of an op: its code, with the patches or tokens per pass for the two ops
    whose kernel has variants."""
    per_pass = options.get("patches_per_pass", options.get("tokens_per_pass"))
    return op if per_pass is None else f"{op}/{per_pass}"


def _linear_macs(n_in: int, n_out: int, rank: int, rows: int, first_factor_passes: int = 1) -> int:
    if rank == 0:
        return rows * n_in * n_out
    return rows * (first_factor_passes * n_in * rank + rank * n_out)


def patch_embed_features(tokens: int, patch_dim: int, embed: int) -> dict:
    """`tokens`: patch tokens (the class token is copied, not computed)."""
    return {"linear_mac": tokens * patch_dim * embed, "output": tokens * embed, "call": 1}


def attention_features(tokens: int, embed: int, heads: int, qkv_dim: int, qkv_rank: int = 0,
                       proj_rank: int = 0, keep_t: int = 0) -> dict:
    """`keep_t` (with a low-rank qkv): the queries' phase reads the kept intermediate, with no
    LayerNorm and no first factor of its own."""
    t, e, d = tokens, embed, qkv_dim
    passes = 1 if keep_t and qkv_rank else 2
    linear = _linear_macs(e, 3 * d, qkv_rank, t, first_factor_passes=passes) + _linear_macs(d, e, proj_rank, t)
    return {"linear_mac": linear, "attention_mac": 2 * t * t * d, "softmax": heads * t * t,
            "layer_norm": passes * t * e, "output": t * (3 * d + e), "call": 1}


def mlp_features(tokens: int, embed: int, hidden: int, fc1_rank: int = 0, fc2_rank: int = 0) -> dict:
    t, e, h = tokens, embed, hidden
    return {"linear_mac": _linear_macs(e, h, fc1_rank, t) + _linear_macs(h, e, fc2_rank, t), "lut": t * h,
            "layer_norm": t * e, "output": t * (h + e), "call": 1}


def head_features(tokens: int, embed: int, classes: int, pool: int) -> dict:
    """`pool`: SPEC 2.4's code. Sequence pooling runs the LayerNorm of every token twice, a score
    dot product per token (int8 MACs like a linear's) and one softmax over the tokens."""
    seq = pool == POOL_SEQ
    layer_norm = embed if pool == POOL_CLS else (2 if seq else 1) * tokens * embed
    return {"layer_norm": layer_norm, "linear_mac": embed * classes + (tokens * embed if seq else 0),
            "softmax": tokens if seq else 0, "call": 1}


def features(config, patch_embed_options: dict, attention_options: list) -> list:
    """(FIGURES key, features) of each custom op of an ArchConfig's graph, in op order, with the
    variants' options the converter writes (memory_model/memory.py chooses them): the patch
    embedding's, and each block's attention's."""
    t, e = config.num_tokens, config.embed_dim
    patch_embed = variant("MCUF_PATCH_EMBED", patch_embed_options)
    out = [(patch_embed, patch_embed_features(size * size, k * k * c_in, c))      # stem layers: no pos, a ReLU
           for k, _, c_in, c, size in config.stem_layers()]
    out.append((patch_embed, patch_embed_features(config.num_patches, config.patch_dim, e)))
    for i in range(config.depth):
        options = attention_options[i]
        out.append((variant("MCUF_ATTENTION", options),
                    attention_features(t, e, config.num_heads[i], config.qkv_dim[i], config.qkv_rank[i],
                                       config.proj_rank[i], options["keep_t"])))
        out.append(("MCUF_MLP", mlp_features(t, e, config.mlp_hidden[i], config.fc1_rank[i], config.fc2_rank[i])))
    out.append(("MCUF_HEAD", head_features(t, e, config.num_classes, POOL_CODES[config.pool])))
    return out


def instructions(op: str, feats: dict, figures: dict = None) -> int:
    figures = figures or FIGURES

    def figure(name):
        return figures[op][name] if name in figures[op] else figures[BORROWED[(op, name)]][name]

    return int(round(sum(figure(name) * value for name, value in feats.items())))


def estimate(config, patch_embed_options: dict, attention_options: list) -> list:
    """Estimated instructions of each custom op's Eval, op order (None before the figures are measured);
    the options as in features()."""
    if MEASURED["date"] is None:
        return [None] * (len(config.stem) + 2 * config.depth + 2)
    return [instructions(op, feats) for op, feats in features(config, patch_embed_options, attention_options)]
