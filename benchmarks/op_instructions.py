"""Benchmark: the per-unit instruction figures of memory_model/op_instructions.py.

Random-weight cases of each custom op over a spread of small and medium shapes
(tflm_ops/test/kernel_cases.py), run by the kernel test driver on an emulated
Cortex-M7 (CMSIS-NN build, QEMU mps2-an500, instruction-count plugin), every
output checked bit-exact against tflm_ops/reference.py. For each op kind the
figures (instructions per MAC, per softmax element, ...) are fitted by
non-negative least squares on relative error; the fit's worst error is
reported, and so is the error on the MCUFormer-shaped ops of
benchmarks/results/kernels.json, which the fit never saw.

    .venv/bin/python benchmarks/op_instructions.py

Writes benchmarks/results/op_instructions.json (atomically); copy its
`figures` and `date` into memory_model/op_instructions.py (a test compares).
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from common import atomic  # noqa: E402
from common.errors import UserError  # noqa: E402
from mcuformer.cli import run_guarded  # noqa: E402
from memory_model import op_instructions as oi  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# (h, c, patch, e, has_cls)
PATCH = [(28, 1, 4, 32, 0), (28, 1, 7, 64, 1), (32, 3, 4, 48, 0), (32, 3, 8, 96, 1), (56, 1, 8, 32, 0),
         (28, 1, 2, 16, 0)]
# (t, e, heads, head_dim, qkv_rank, proj_rank)
ATTENTION = [(17, 32, 2, 16, 0, 0), (17, 64, 4, 16, 0, 0), (50, 32, 1, 32, 0, 0), (50, 64, 2, 32, 0, 0),
             (65, 48, 3, 16, 0, 0), (65, 96, 3, 32, 0, 0), (37, 64, 4, 8, 0, 0), (26, 64, 2, 32, 16, 16),
             (50, 96, 3, 32, 24, 24), (17, 128, 4, 32, 0, 0), (100, 32, 2, 16, 0, 0)]
# (t, e, hidden, fc1_rank, fc2_rank)
MLP = [(17, 32, 64, 0, 0), (17, 64, 256, 0, 0), (50, 32, 128, 0, 0), (65, 96, 192, 0, 0), (37, 48, 96, 0, 0),
       (26, 64, 128, 16, 16), (50, 96, 384, 48, 48), (100, 32, 64, 0, 0)]
# (t, e, classes, pool: 0 mean, 1 class token)
HEAD = [(17, 32, 10, 0), (50, 64, 10, 0), (65, 96, 10, 1), (17, 128, 100, 0), (37, 48, 10, 1), (100, 32, 10, 0),
        (17, 32, 10, 2), (65, 96, 10, 2), (100, 48, 10, 2)]        # pool 2: sequence pooling


def cases():
    """(op, case, features) of every measured shape."""
    from tflm_ops.test import kernel_cases as kc

    rng = np.random.default_rng(0)
    out = []
    for ppp in (4, 1):
        for h, c, p, e, cls in PATCH:
            case = kc.patch_embed_case(rng, h=h, w=h, c=c, patch=p, e=e, has_cls=cls, patches_per_pass=ppp)
            out.append((oi.variant("MCUF_PATCH_EMBED", case.options), case,
                        oi.patch_embed_features((h // p) ** 2, p * p * c, e)))
    for tpp in (4, 8):
        for i, (t, e, heads, hd, qr, pr) in enumerate(ATTENTION):
            case = kc.attention_case(rng, t=t, e=e, heads=heads, head_dim=hd, qkv_rank=qr, proj_rank=pr,
                                     tokens_per_pass=tpp, keep_t=i % 2)
            out.append((oi.variant("MCUF_ATTENTION", case.options), case,
                        oi.attention_features(t, e, heads, heads * hd, qr, pr, keep_t=i % 2)))
    for t, e, hidden, r1, r2 in MLP:
        out.append(("MCUF_MLP", kc.mlp_case(rng, t=t, e=e, hidden=hidden, fc1_rank=r1, fc2_rank=r2),
                    oi.mlp_features(t, e, hidden, r1, r2)))
    for t, e, k, pool in HEAD:
        out.append(("MCUF_HEAD", kc.head_case(rng, t=t, e=e, classes=k, pool=pool),
                    oi.head_features(t, e, k, pool)))
    for _, case, _ in out:
        case.in_place = True
    return out


def fit(rows) -> dict:
    """Non-negative least squares of instructions on features, weighted by 1/instructions."""
    names = list(rows[0][0])
    x = np.array([[f[n] for n in names] for f, _ in rows], np.float64)
    y = np.array([c for _, c in rows], np.float64)
    active = list(range(len(names)))
    while True:
        w = x[:, active] / y[:, None]
        coef, *_ = np.linalg.lstsq(w, np.ones(len(y)), rcond=None)
        if (coef >= 0).all():
            break
        active.pop(int(np.argmin(coef)))
    figures = dict.fromkeys(names, 0.0)
    for i, c in zip(active, coef):
        figures[names[i]] = float(round(c, 4))
    return figures


def kernels_json_validation(figures) -> dict:
    """The fitted figures on benchmarks/results/kernels.json's MCUFormer-shaped ops (not in the fit)."""
    data = json.loads((RESULTS / "kernels.json").read_text())
    t, e, heads, hidden = data["tokens"], data["embed"], data["heads"], data["hidden"]
    patch_embed = oi.patch_embed_features(t - 1, 20 * 20 * 3, e)
    shapes = {"patch_embed": ("MCUF_PATCH_EMBED/4", patch_embed),
              "patch_embed_1_per_pass": ("MCUF_PATCH_EMBED/1", patch_embed),
              "attention_full_rank": ("MCUF_ATTENTION/8", oi.attention_features(t, e, heads, e)),
              "attention_rank_48": ("MCUF_ATTENTION/8", oi.attention_features(t, e, heads, e, 48, 48, keep_t=1)),
              "attention_full_rank_4_per_pass": ("MCUF_ATTENTION/4", oi.attention_features(t, e, heads, e)),
              "attention_rank_48_4_per_pass": ("MCUF_ATTENTION/4", oi.attention_features(t, e, heads, e, 48, 48)),
              "mlp_full_rank": ("MCUF_MLP", oi.mlp_features(t, e, hidden)),
              "mlp_rank_96": ("MCUF_MLP", oi.mlp_features(t, e, hidden, 96, 96)),
              "head_mean": ("MCUF_HEAD", oi.head_features(t, e, 10, 0))}
    out = {}
    for name, (op, feats) in shapes.items():
        measured = data["ops"][name]["instructions"]
        estimate = oi.instructions(op, feats, figures)
        out[name] = {"measured": measured, "estimate": estimate, "error": round(estimate / measured - 1, 4)}
    return out


def main() -> int:
    from deploy import cortex_m_kernels, tflm

    root = tflm.ensure_tflm()
    named = cases()
    parsed, counts = cortex_m_kernels.measure_cases(root, [case for _, case, _ in named])
    measured, by_op = [], {}
    for (op, case, feats), result, count in zip(named, parsed, counts):
        got = np.frombuffer(result.output, np.int8).reshape(case.out_shape)
        mismatched = int(np.count_nonzero(got != case.expected()))
        if mismatched:
            raise UserError(f"{op} case {feats}: {mismatched} outputs differ from the reference")
        measured.append({"op": op, "features": feats, "instructions": count})
        by_op.setdefault(op, []).append((feats, count))
    figures = {op: fit(rows) for op, rows in by_op.items()}
    for row in measured:
        est = oi.instructions(row["op"], row["features"], figures)
        row["estimate"], row["error"] = est, round(est / row["instructions"] - 1, 4)
        print(f"{row['op']:19s} {row['instructions']:>11,d} measured  {est:>11,d} estimated  "
              f"{100 * row['error']:+6.1f}%")
    validation = kernels_json_validation(figures)
    for name, v in validation.items():
        print(f"held out {name:30s} {v['measured']:>12,d} measured  {v['estimate']:>12,d} estimated  "
              f"{100 * v['error']:+6.1f}%")
    out = RESULTS / "op_instructions.json"
    atomic.write_json(out, {"date": datetime.date.today().isoformat(),
                            "device": oi.MEASURED["device"], "figures": figures,
                            "fit_max_abs_error": max(abs(r["error"]) for r in measured),
                            "held_out_kernels_json": validation, "cases": measured})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
