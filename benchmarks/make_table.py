"""Regenerate benchmarks/README.md and the README's results table from
benchmarks/results/*.json (written by the other benchmark scripts).

    .venv/bin/python benchmarks/make_table.py

Every number printed comes from a results file; each table names the command
that produced it. A missing results file leaves its table out with a note.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import atomic  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"
# Published Fashion-MNIST reference points (not measured here).
ANCHORS = [("2-conv CNN, < 100K params (Fashion-MNIST benchmark page)", "92.5%"),
           ("Google AutoML Vision", "93.9%"), ("MobileNet", "95.0%")]


def _load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _b(n) -> str:
    return "–" if n is None else f"{int(n):,} B"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _cmd(data: dict | None, default: str) -> str:
    command = (data or {}).get("command", default).strip()
    command = re.sub(r"^(\.venv/bin/)?python3?\s+", "", command)
    command = f".venv/bin/python {command}"
    return f"`{command}`"


def arena_table(arena: dict) -> list:
    rows = ["| model | our arena (Cortex-M7, measured) | TFLM builtin arena (measured) | lower bound | ours / bound "
            "| ours vs builtin | flash (model) | instructions / inference, ours vs builtin |",
            "|---|---|---|---|---|---|---|---|"]
    names = {"deit_tiny": "DeiT-Tiny shape (224/16, E192, 12 blocks)",
             "mcuformer_shape": "MCUFormer shape (240/20, E192, 13 blocks)"}
    for key, m in arena["models"].items():
        ours, builtin = m["ours"], m["builtin"]
        rows.append(f"| {names.get(key, key)} | {_b(ours['qemu']['arena_used_bytes'])} | "
                    f"{_b(builtin['qemu']['arena_used_bytes'])} | {_b(m['lower_bound_bytes'])} | "
                    f"{m['arena_over_lower_bound']:.3f}x | {m['arena_reduction_vs_builtin']:.2f}x smaller | "
                    f"{_b(ours['flash_bytes'])} | {ours['qemu']['instructions_per_inference']:.3e} vs "
                    f"{builtin['qemu']['instructions_per_inference']:.3e} |")
    return rows


def disco_table(arena: dict) -> list:
    """The shapes built for the STM32F746G-DISCO (benchmarks/arena.py --disco): weights in QSPI."""
    rows = ["| built for stm32f746g-disco | model in QSPI (`.mcuformer_ext_weights`) | internal flash (code, "
            "constants, 1 test image; of 1 MiB) | arena: static / arena_used in QEMU (plan) | QEMU twin vs "
            "numpy reference | instructions / inference (QEMU) |", "|---|---|---|---|---|---|"]
    names = {"deit_tiny": "DeiT-Tiny shape", "mcuformer_shape": "MCUFormer shape"}
    for key, m in arena.get("stm32f746g-disco", {}).items():
        mismatched = m["qemu_mismatched_outputs_vs_reference"]
        rows.append(f"| {names.get(key, key)} | {_b(m['external_flash_bytes'])} at {m['external_address']} "
                    f"(twin: PSRAM {m['qemu_twin_external_address']}) | {_b(m['internal_flash_bytes'])} | "
                    f"{_b(m['arena_bytes'])} / {_b(m['qemu_arena_used_bytes'])} ({_b(m['planned_arena_bytes'])}) | "
                    f"{'bit-exact' if mismatched == 0 else f'{mismatched} outputs differ'} | "
                    f"{m['qemu_instructions_per_inference']:,} |")
    return rows


def _disco(arena: dict | None) -> dict | None:
    if not (arena and arena.get("stm32f746g-disco")):
        return None
    command = arena.get("stm32f746g-disco_command")
    return {"stm32f746g-disco": arena["stm32f746g-disco"], **({"command": command} if command else {})}


def demo_table(demo: dict) -> list:
    acc, sram, arch = demo["accuracy"], demo["sram"], demo["architecture"]
    rows = ["| Fashion-MNIST, `make demo` | float | int8 (numpy reference) | required arena, Cortex-M7 "
            "(arena_used, measured in QEMU) | model flash | MACs | instructions / inference (QEMU) | wall (stages) |",
            "|---|---|---|---|---|---|---|---|",
            f"| {demo['budget']['source']} ({_b(demo['budget']['sram'])} SRAM, {_b(demo['budget']['flash'])} flash, "
            f"<= {demo['budget']['max_macs']:,} MACs): {arch['description']}, {arch['params']:,} params | "
            f"{_pct(acc['float'])} | {_pct(acc['int8'])} of {acc['test_images']:,} test images"
            f"{_ranges(acc)} | {_b(sram['required_arena_bytes_cortex_m'])} ({_b(sram['measured_arena_bytes_cortex_m'])}) | "
            f"{_b(demo['flash']['model_flatbuffer_bytes'])} | {arch['macs']:,} | "
            f"{demo['instructions_per_inference_cortex_m7_qemu']:,} | {demo['total_stage_seconds']:.0f} s |"]
    for name, value in ANCHORS:
        rows.append(f"| anchor (published, not ours): {name} | | {value} | | | | | |")
    return rows


def accuracy_table(acc: dict, convert: dict | None) -> list:
    """benchmarks/accuracy_fmnist.py: every model on the 10,000 test images, int8 by the numpy reference
    and, where measured, by TFLM on the host (with the output bytes that differ from the reference)."""
    rows = ["| stage | model | train images | params | MACs | model flash | required arena | float | int8 "
            "| int8 in TFLM (bytes differing) | val: inherited -> final | wall |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    labels = {k: v["label"] for k, v in acc.get("budgets", {}).items()}
    for stage, r in acc["results"].items():
        budget = labels.get(stage.split("/")[0])
        where = f"{stage} ({budget})" if budget else stage
        if r.get("teacher"):
            where += f", distilled from {'cnn2' if r['teacher'] is True else r['teacher']}"
        if "int8_top1" in r:
            val = (f"{_pct(r['val_inherited'])} -> {_pct(r['val_finetuned'])}" if "val_inherited" in r else "")
            tflm = r.get("tflm_host")
            on_tflm = f"{_pct(tflm['int8_top1'])} ({tflm['mismatched_outputs']})" if tflm else "not run"
            rows.append(f"| {where} | {r['arch']} | {r.get('train_images', 'all')} | {r['params']:,} | "
                        f"{r['macs']:,} | {_b(r['flash_model_bytes'])} | {_b(r['required_arena_bytes'])} | "
                        f"{_pct(r['float_top1'])} | {_pct(r['int8_top1'])}{_ranges(r)} | {on_tflm} | {val} | "
                        f"{r['wall_seconds']:.0f} s |")
        elif "test_top1" in r:
            rows.append(f"| {where} | {r['model']} | {r['train_images']} | {r['params']:,} | {r['macs']:,} | | | "
                        f"{_pct(r['test_top1'])} | | | | {r['wall_seconds']:.0f} s |")
    if convert and "accuracy" in convert:
        c = convert["accuracy"]
        rows.append(f"| converter benchmark: {c['arch']} | PTQ float {_pct(c['ptq']['float'])} int8 "
                    f"{_pct(c['ptq']['int8_reference'])}; QAT 1 epoch float {_pct(c['qat_1_epoch']['float'])} int8 "
                    f"{_pct(c['qat_1_epoch']['int8_reference'])} | | | | | | | | | | |")
    for name, value in ANCHORS:
        rows.append(f"| anchor (published, not ours) | {name} | | | | | | | {value} | | | |")
    space = acc["results"].get("evolve/space")
    evolve_lines = [f"- evolve/space ({space['budget']}, {len(space['rounds'])} round(s)): " + "; ".join(
        f"{d} {r['choices'][d]} E-T {r['et_error'][d]} -> {r['action'][d]}" for r in space["rounds"]
        for d in r["action"])] if space else []
    summary = acc.get("summary", {})
    def value(name, v):
        if "minus" in name:
            return _signed(v)
        return f"{v:+.2f}" if "tau" in name else _pct(v) if isinstance(v, float) else v

    lines = [f"- {k}: " + ", ".join(f"{n} {value(n, v)}" for n, v in s.items()) for k, s in summary.items()]
    lines += evolve_lines
    commands = sorted({r["command"] for r in acc["results"].values() if r.get("command")})
    lines += [f"- rows measured by `.venv/bin/python {c}`" for c in commands]
    lines += [f"- model flash, required arena and test accuracy of the trained rows re-measured on {day} by "
              "`.venv/bin/python benchmarks/accuracy_fmnist.py --reconvert` (same trained weights, that day's converter)"
              for day in sorted({r["reconverted"] for r in acc["results"].values() if r.get("reconverted")})]
    later = [k for k, r in acc["results"].items() if "flash_model_bytes" in r and _patch_embed_v4(k, r)]
    lines.append(f"- rows converted before 2026-12-01 used MCUF_PATCH_EMBED version 3; the {len(later)} converted "
                 "since (the f746_15m_stem and f746_15m_tokenizers rows and those re-measured by --reconvert on a later day) "
                 "use version 4, "
                 "which adds two options to the model file and 8 bytes to the op's OpData: 16-32 B more flash and "
                 "up to 16 B more arena (measured on the DeiT-Tiny and MCUFormer shapes, benchmarks/results/arena.json)")
    if any(_ranges(r) for r in acc["results"].values()):
        lines.append("- int8: activation ranges from 500 calibration images of the training split, clipped at the "
                     "99.9th percentile, except where the cell names `auto: <method>`: there `mcuformer convert "
                     "--range auto` converted with each of percentile 99.9, percentile 99.99, mse and min/max and "
                     "kept the one best on 2,000 validation images (never the test set)")
    if any(r.get("tflm_host") for r in acc["results"].values()):
        lines.append("- int8 in TFLM: the converted model run by TFLM on the host (x86_64) over the same test images, "
                     "with the count of output bytes that differ from the numpy reference, by "
                     "`.venv/bin/python benchmarks/accuracy_fmnist.py --verify-tflm`")
    lines += [f"- kendall_tau_proxy: the search's finalist proxy ({steps} fine-tuning steps from inherited weights, "
              "search/proxy.py) of each subnet, scored by `.venv/bin/python benchmarks/accuracy_fmnist.py --score-proxy`"
              for steps in sorted({r["proxy_steps"] for r in acc["results"].values() if r.get("proxy_steps")})]
    return rows + ([""] + lines if lines else [])


def _patch_embed_v4(stage: str, row: dict) -> bool:
    """Converted after MCUF_PATCH_EMBED version 4 landed (2026-12-01 21:17): a stem needs it; the
    rows converted since then are the stem and tokenizer rows and those --reconvert re-measured on a later day."""
    return stage.startswith(("f746_15m_stem/", "f746_15m_tokenizers/")) or row.get("reconverted", "") > "2026-12-01"


def _ranges(row: dict) -> str:
    ranges = row.get("int8_ranges", "")
    return f" ({ranges})" if ranges.startswith("auto") else ""


ACCURACY_TARGETS = {"mcu_64k": 0.910, "f746_15m": 0.925}   # issue 15's int8 test top-1 targets


def target_status(acc: dict) -> str:
    """Each budget's best int8 winner (over its summary rows) against its target."""
    parts = []
    for budget, target in ACCURACY_TARGETS.items():
        rows = {k: v["winner_int8"] for k, v in acc["summary"].items()
                if (k == budget or k.startswith(budget + "_")) and "winner_int8" in v}
        best = max(rows, key=rows.get, default=None)
        met = best is not None and rows[best] >= target
        parts.append(f"{budget} target {_pct(target)} " + (f"met by {best} ({_pct(rows[best])})" if met else
                     f"not met yet (best {_pct(rows[best])})" if best else "not measured") + _reseeded(rows, best))
    return ", ".join(parts)


SEARCH_GAIN_TARGET = 0.010      # issue 15: the winner beats the mean of 3 random feasible subnets by 1.0 point


def search_gain_status(acc: dict) -> str:
    """Winner minus the mean of its random subnets, for every summary row that measured it (the
    rows that fall short as well: the best alone would hide how often the search does not pay)."""
    rows = {k: v["winner_minus_random_mean"] for k, v in acc["summary"].items() if "winner_minus_random_mean" in v}
    if not rows:
        return "winner - random mean not measured"
    met = [k for k in rows if rows[k] >= SEARCH_GAIN_TARGET]
    head = (f"winner - random mean target {_signed(SEARCH_GAIN_TARGET)} met by {', '.join(met)}" if met
            else f"winner - random mean target {_signed(SEARCH_GAIN_TARGET)} not met yet")
    return head + " (" + ", ".join(f"{k} {_signed(v)}{_reseeded_gain(acc['summary'], k)}"
                                   for k, v in sorted(rows.items(), key=lambda kv: -kv[1])) + ")"


def _reseeded_gain(summary: dict, row: str) -> str:
    """The winner's final training run again with other seeds (--finetune-seed), against the same random mean."""
    mean = summary[row]["random_int8_mean"]
    others = [v["winner_int8"] - mean for k, v in summary.items()
              if re.fullmatch(re.escape(row) + r"_seed\d+", k) and "winner_int8" in v]
    return f" (its winner trained with another seed: {', '.join(_signed(g) for g in others)})" if others else ""


def _reseeded(rows: dict, best: str | None) -> str:
    """The same final training run again with other seeds (--finetune-seed), beside the best row: the
    best of several seeds on the test set alone would overstate what one training gives."""
    base = best and re.sub(r"_seed\d+$", "", best)
    others = [rows[k] for k in rows if k != best and re.sub(r"_seed\d+$", "", k) == base]
    return f" (the same training with another seed: {', '.join(_pct(v) for v in others)})" if others else ""


def _signed(x: float) -> str:
    return f"{100 * x:+.2f} points"


def techniques_table(search: dict) -> list:
    rows = ["| model | techniques | predicted arena | head | tail |", "|---|---|---|---|---|"]
    for model, table in search["techniques"].items():
        for technique, v in table.items():
            if isinstance(v, dict):
                rows.append(f"| {model} | {technique} | {_b(v['arena_bytes'])} | {_b(v['head'])} | {_b(v['tail'])} |")
    mm = search["memory_model"]
    rows.append(f"\nMemory model speed: {mm['evaluations_per_second']:,.0f} subnet evaluations/s "
                f"({mm['subnets']:,} subnets in {mm['seconds']:.2f} s).")
    return rows


def kernels_table(kernels: dict) -> list:
    rows = [f"Shapes: {kernels['tokens']} tokens x {kernels['embed']}, {kernels['heads']} heads, MLP "
            f"{kernels['hidden']}; {kernels['device']}.", "",
            "| op | instructions | int8 MACs | instructions / MAC | scratch | bytes differing from reference |",
            "|---|---|---|---|---|---|"]
    for name, op in kernels["ops"].items():
        rows.append(f"| {name} | {op['instructions']:,} | {op['macs']:,} | {op['instructions_per_mac']} | "
                    f"{_b(op['scratch_bytes'])} | {op['mismatched_outputs']} |")
    return rows


def byo_table(byo: dict) -> list:
    rows = [f"Stock tf_keras ViTs (tests/byo_models.py), {byo['train']}; the same weights through "
            f"TFLiteConverter's int8 builtin ops and through `mcuformer convert`. Accuracy on the "
            f"{next(iter(byo['models'].values()))['test_images']:,} test images; arena and instructions "
            f"measured under QEMU (Cortex-M7).", "",
            "| model (float accuracy) | path | int8 accuracy | arena (Cortex-M7) | flash (model) "
            "| instructions / inference |", "|---|---|---|---|---|---|"]
    for name, m in byo["models"].items():
        ours, builtin = m["ours"], m["builtin"]
        rows.append(f"| {name} ({_pct(m['float_accuracy'])}) | ours | {_pct(ours['int8_accuracy'])} | "
                    f"{_b(ours['qemu']['arena_used_bytes'])} | {_b(ours['flash_bytes'])} | "
                    f"{ours['qemu']['instructions_per_inference']:,} |")
        if builtin.get("runs_in_tflm"):
            rows.append(f"| | builtin | {_pct(builtin['int8_accuracy'])} | {_b(builtin['qemu']['arena_used_bytes'])} "
                        f"| {_b(builtin['flash_bytes'])} | {builtin['qemu']['instructions_per_inference']:,} |")
        else:
            why = builtin["why"].split("failed: ")[-1].split(" | ")[0]
            rows.append(f"| | builtin | does not run in TFLM: {why} | – | {_b(builtin['flash_bytes'])} | – |")
    return rows


def op_instructions_lines(fit: dict) -> list:
    rows = [f"Instructions per unit fitted to {len(fit['cases'])} kernel shapes measured on {fit['date']} "
            f"({fit['device']}); worst error on them {100 * fit['fit_max_abs_error']:.1f}%.", "",
            "| op | figures (instructions per unit) |", "|---|---|"]
    for op, figures in fit["figures"].items():
        rows.append(f"| {op} | " + ", ".join(f"{v:g} per {k.replace('_', ' ')}" for k, v in figures.items() if v)
                    + " |")
    rows += ["", "| held out (benchmarks/results/kernels.json) | measured | estimated | error |", "|---|---|---|---|"]
    for name, v in fit["held_out_kernels_json"].items():
        rows.append(f"| {name} | {v['measured']:,} | {v['estimate']:,} | {100 * v['error']:+.1f}% |")
    return rows


def supernet_lines(supernet: dict) -> list:
    return [f"- Kendall tau (inherited vs fine-tuned accuracy, {len(supernet.get('subnets', [])) or 20} subnets): "
            f"{supernet['kendall_tau_inherited_vs_finetuned']:.3f}",
            f"- best inherited validation accuracy: {_pct(supernet['best_inherited_val_acc'])}",
            f"- wall time per supernet epoch on this 2-core machine: {supernet['wall_seconds_per_epoch']:.0f} s "
            f"({supernet['train_images']:,} images, {supernet['train_settings']['epochs']} epochs)"]


STEM_VARIANTS = {"window7": "7x7 window, stride 4 (the deployed tokenizer)",
                 "stem2": "3x3 s2 1->24 ReLU, then 3x3 s2 24->E",
                 "stem3": "3x3 s1 1->16 ReLU, 3x3 s2 16->32 ReLU, then 3x3 s2 32->E"}


def _stem_variant(row_name: str) -> str:
    return re.split(r"_seed|_\d+ep", row_name)[0]


def stem_probe_table(probe: dict) -> list:
    rows = [f"Trained from scratch in front of the transformer of `{probe['transformer']}` with the "
            "same recipe and cnn4 teacher; the best validation epoch is kept, the 10,000 test images read once. "
            "Rows run with `--convert` are converted like the accuracy benchmark's models (500 calibration images, "
            "int8 through the numpy reference, and in TFLM on the host with the output bytes that differ).", "",
            "| tokenizer | params | MACs | epochs | best val (epoch) | float test top-1 | int8 | int8 in TFLM "
            "(bytes differing) | model flash | required arena | wall (training) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = list(STEM_VARIANTS)
    for name, r in sorted(probe["rows"].items(), key=lambda kv: (order.index(_stem_variant(kv[0])), kv[0])):
        tflm = r.get("tflm_host")
        on_tflm = f"{_pct(tflm['int8_top1'])} ({tflm['mismatched_outputs']})" if tflm else ""
        int8, flash, arena = (_pct(r["int8_top1"]), _b(r["flash_model_bytes"]),
                              _b(r["required_arena_bytes"])) if "int8_top1" in r else ("", "", "")
        rows.append(f"| {name}: {STEM_VARIANTS[_stem_variant(name)]} | {r['params']:,} | {r['macs']:,} | {r['epochs']} | "
                    f"{_pct(r['best_val'])} ({r['best_epoch']}) | {_pct(r['float_test_top1'])} | {int8} | {on_tflm} | "
                    f"{flash} | {arena} | {r['wall_seconds']:.0f} s |")
    return rows


def build_sections() -> tuple:
    arena, search, convert, demo = _load("arena"), _load("search_fmnist"), _load("convert"), _load("demo_fmnist")
    kernels, supernet = _load("kernels"), _load("supernet_fmnist")
    byo, op_fit, accuracy = _load("byo_vit"), _load("op_instructions"), _load("accuracy_fmnist")
    full, short = ["# Benchmarks", "",
                   "Generated by `.venv/bin/python benchmarks/make_table.py` from `benchmarks/results/*.json`; "
                   "the command under each table reproduces its numbers. Instruction counts come from QEMU "
                   "(`-M mps2-an500`, a Cortex-M7) with this project's TCG plugin: QEMU is not cycle-accurate, "
                   "so no times are given.", ""], []
    sections = [
        ("Fashion-MNIST demo", demo, demo_table, "-m mcuformer demo --out out/demo"),
        ("Arena, flash and instructions: ours vs TFLM builtin ops vs lower bound", arena,
         lambda d: arena_table(d), "benchmarks/arena.py"),
        ("ImageNet-shaped models on the STM32F746G-DISCO: weights in its 16 MiB QSPI flash",
         _disco(arena), disco_table, "benchmarks/arena.py --disco"),
        ("Fashion-MNIST accuracy under MCU budgets: searched, random, small data, CNN", accuracy,
         lambda d: accuracy_table(d, convert), "benchmarks/accuracy_fmnist.py"),
        ("Memory-model ablation: MCUFormer's scheduling techniques (predicted, Cortex-M7)", search,
         techniques_table, "benchmarks/search_fmnist.py"),
        ("Kernels: instructions per op (emulated Cortex-M7, CMSIS-NN)", kernels, kernels_table,
         "benchmarks/kernels.py"),
        ("Instruction estimate: figures behind `mcuformer report`", op_fit, op_instructions_lines,
         "benchmarks/op_instructions.py"),
        ("Bring your own ViT: a stock tf_keras ViT, TFLM builtin ops vs ours", byo, byo_table,
         "benchmarks/byo_vit.py"),
        ("Supernet (Fashion-MNIST space)", supernet, supernet_lines, "benchmarks/supernet_fmnist.py"),
        ("Tokenizer probe: a convolutional stem in front of the F746 model", _load("probe_tokenizer_stem"),
         stem_probe_table, "benchmarks/probe/tokenizer_stem.py --variant <window7|stem2|stem3> --epochs 12"),
    ]
    for title, data, render, default_cmd in sections:
        full += [f"## {title}", ""]
        if data is None:
            full += [f"Not measured yet: run `.venv/bin/python {default_cmd}`.", ""]
            continue
        full += render(data) + ["", f"Reproduce: {_cmd(data, default_cmd)}", ""]
    if arena:
        short += arena_table(arena) + ["", f"Reproduce: {_cmd(arena, 'benchmarks/arena.py')}; more in "
                                       f"[benchmarks/README.md](benchmarks/README.md)."]
    if arena and arena.get("stm32f746g-disco"):
        short += [""] + disco_table(arena) + [
            "", f"Reproduce: {_cmd(_disco(arena), 'benchmarks/arena.py --disco')} (QEMU counts instructions, not "
                "cycles; QSPI reads on silicon are slower than internal flash and were not measured)."]
    if demo:
        short += [""] + demo_table(demo) + ["", f"Reproduce: `make demo` ({demo['measured']})."]
    if accuracy:
        short += ["", "Fashion-MNIST accuracy under MCU budgets (issue 15; supernet and search at reduced settings; "
                  f"targets against searched rows: {target_status(accuracy)}; {search_gain_status(accuracy)}; "
                  "each row's command gives its final "
                  "training):", ""] + accuracy_table(accuracy, None) + [
            "", "Plot: [benchmarks/results/accuracy_fmnist.png](benchmarks/results/accuracy_fmnist.png); all "
                "stages with their defaults: `.venv/bin/python benchmarks/accuracy_fmnist.py`."]
    probe = _load("probe_tokenizer_stem")
    converted = [(n, r) for n, r in (probe or {}).get("rows", {}).items() if "int8_top1" in r]
    if converted:
        short += ["", "The f746_15m winner's transformer behind a convolutional stem (tokenizer probe, trained from "
                  f"scratch; not a searched row; the f746_15m target is {_pct(ACCURACY_TARGETS['f746_15m'])} int8 under "
                  "15 M MACs): " + "; ".join(
                      f"{n} ({r['epochs']} epochs, {r['macs']:,} MACs, model flash {_b(r['flash_model_bytes'])}, "
                      f"required arena {_b(r['required_arena_bytes'])}): float {_pct(r['float_top1'])}, int8 "
                      f"{_pct(r['int8_top1'])}" + (f", in TFLM {_pct(r['tflm_host']['int8_top1'])} "
                                                   f"({r['tflm_host']['mismatched_outputs']} bytes differing)"
                                                   if r.get("tflm_host") else "") +
                      f" on the 10,000 test images; `.venv/bin/python {r['command']} --convert`"
                      for n, r in converted) + "."]
    return "\n".join(full) + "\n", "\n".join(short)


def main() -> int:
    full, short = build_sections()
    atomic.write_text(ROOT / "benchmarks" / "README.md", full)
    readme = (ROOT / "README.md").read_text()
    block = f"{START}\n{short}\n{END}"
    if START in readme:
        readme = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S)
    else:
        readme = readme.rstrip() + "\n\n## Results\n\n" + block + "\n"
    atomic.write_text(ROOT / "README.md", readme)
    print("wrote benchmarks/README.md and the README's results table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
