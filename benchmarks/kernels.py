"""Benchmark: instructions of each custom op's Eval on an emulated Cortex-M7 (CMSIS-NN build).

MCUFormer-shaped ops (240/20 image, 3 channels, class token: 145 tokens of
192, 3 heads, MLP 4x; full rank and low rank) with random weights, run by the
kernel test driver (tflm_ops/test/kernel_test.cc, cortex_m_generic
cortex-m7+fp, CMSIS-NN) under QEMU mps2-an500; QEMU's instruction-count plugin
counts the instructions of each Eval. Every output is checked bit-exact
against tflm_ops/reference.py first. MACs count the int8 multiply-accumulates
the kernel executes for the op's linears, scores and context: a low-rank qkv's
first factor twice, unless the attention keeps its intermediate (`keep_t`).
The attention rows without a suffix are the variant the converter writes for
the MCUFormer shape (memory_model.memory.attention_passes: 8 tokens a pass,
keep_t with a low-rank qkv); the `_4_per_pass` rows the leanest (4, no keep_t).

    .venv/bin/python benchmarks/kernels.py

Writes benchmarks/results/kernels.json (atomically).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from common import atomic  # noqa: E402
from mcuformer.cli import run_guarded  # noqa: E402

T, E, HEADS, HIDDEN, IMAGE, PATCH = 145, 192, 3, 768, 240, 20


def cases():
    """(name, case, MACs) of the benchmarked ops."""
    from tflm_ops.test import kernel_cases as kc
    rng = np.random.default_rng(0)
    d = E

    def attention(rank, tokens_per_pass, keep_t):
        """The case and its MACs: a low-rank qkv's first factor once with keep_t, else twice."""
        case = kc.attention_case(rng, t=T, e=E, heads=HEADS, head_dim=d // HEADS, qkv_rank=rank, proj_rank=rank,
                                 tokens_per_pass=tokens_per_pass, keep_t=keep_t)
        qkv = E * 3 * d if rank == 0 else (1 if keep_t else 2) * E * rank + rank * 3 * d
        proj = d * E if rank == 0 else (d + E) * rank
        return case, T * (qkv + proj) + 2 * T * T * d

    out = [
        ("patch_embed", kc.patch_embed_case(rng, h=IMAGE, w=IMAGE, c=3, patch=PATCH, e=E, has_cls=1,
                                            patches_per_pass=4), (T - 1) * PATCH * PATCH * 3 * E),
        ("attention_full_rank", *attention(0, 8, 0)),
        ("attention_rank_48", *attention(48, 8, 1)),
        ("mlp_full_rank", kc.mlp_case(rng, t=T, e=E, hidden=HIDDEN, fc1_rank=0, fc2_rank=0),
         T * 2 * E * HIDDEN),
        ("mlp_rank_96", kc.mlp_case(rng, t=T, e=E, hidden=HIDDEN, fc1_rank=96, fc2_rank=96),
         T * 2 * 96 * (E + HIDDEN)),
        ("head_mean", kc.head_case(rng, t=T, e=E, classes=10, pool=0), E * 10),
        # one patch a pass: the smaller scratch the converter picks where the patch embedding sets the arena peak
        ("patch_embed_1_per_pass", kc.patch_embed_case(rng, h=IMAGE, w=IMAGE, c=3, patch=PATCH, e=E, has_cls=1,
                                                       patches_per_pass=1), (T - 1) * PATCH * PATCH * 3 * E),
        # the leanest attention: 4 tokens a pass, the low-rank qkv intermediate computed again for the queries
        ("attention_full_rank_4_per_pass", *attention(0, 4, 0)),
        ("attention_rank_48_4_per_pass", *attention(48, 4, 0)),
    ]
    for _, case, _ in out:
        case.in_place = True
    return out


def main() -> int:
    from deploy import tflm
    from deploy import cortex_m_kernels
    root = tflm.ensure_tflm()
    named = cases()
    parsed, instructions = cortex_m_kernels.measure_cases(root, [case for _, case, _ in named])
    rows = {}
    for (name, case, macs), result, count in zip(named, parsed, instructions):
        got = np.frombuffer(result.output, np.int8).reshape(case.out_shape)
        mismatched = int(np.count_nonzero(got != case.expected()))
        rows[name] = {"instructions": count, "macs": macs, "instructions_per_mac": round(count / macs, 3),
                      "scratch_bytes": result.scratch_bytes[0], "mismatched_outputs": mismatched}
        for option in ("patches_per_pass", "tokens_per_pass", "keep_t"):
            if option in case.options:
                rows[name][option] = case.options[option]
        print(f"{name:30s} {count:>12,d} instructions  {macs:>11,d} MACs  {count / macs:5.2f}/MAC  "
              f"mismatched {mismatched}")
    out = Path(__file__).resolve().parent / "results" / "kernels.json"
    atomic.write_json(out, {"device": "QEMU mps2-an500 (Cortex-M7), cortex_m_generic cortex-m7+fp CMSIS-NN",
                            "tokens": T, "embed": E, "heads": HEADS, "hidden": HIDDEN, "ops": rows})
    print(f"wrote {out}")
    return 0 if all(r["mismatched_outputs"] == 0 for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(run_guarded(main))
