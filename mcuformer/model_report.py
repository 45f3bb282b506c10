"""`mcuformer report`: what a converted model costs, per op, before it is flashed.

`build_report` gathers the numbers (memory_model.per_op on the written
model.tflite, the board, the builtin baseline, report.json's accuracy and
import/low-rank notes); `layout` lays them out (text or Markdown). No
TensorFlow: it reads files and runs the memory model.
"""
from __future__ import annotations

from common.units import format_bytes

POINTER_SIZE = 4                 # the tables are for the 32-bit Cortex-M build
COLUMNS = ("op", "activations B", "scratch B", "head in use B", "persistent B", "flash B", "MACs",
           "instructions (est.)")


def build_report(model_dir, board=None, measured=None) -> dict:
    """The report of a `read_model_dir` folder; `board` a common.boards.Board; `measured` the host
    runner's {"arena_used_bytes": n} (from --measure)."""
    from deploy.app import arena_size
    from keras_supernet.arch import ArchConfig
    from memory_model import op_instructions
    from memory_model.flash_split import split_flash
    from memory_model.memory import CODE_FLASH_BYTES, custom_graph_plan
    from memory_model.per_op import graph_costs

    saved = model_dir.report
    arch = ArchConfig.from_dict(saved["arch"])
    costs = graph_costs(model_dir.tflite.read_bytes(), POINTER_SIZE, config=arch)
    plan = custom_graph_plan(arch)
    out = {"model_dir": str(model_dir.path), "arch": arch.describe(), "pointer_size": POINTER_SIZE,
           "ops": [o.to_dict() for o in costs.ops],
           "totals": {"arena_bytes": costs.arena_bytes, "head_bytes": costs.head_bytes,
                      "tail_bytes": costs.tail_bytes, "interpreter_tail_bytes": costs.interpreter_tail_bytes,
                      "flash_bytes": costs.file_bytes, "flatbuffer_structure_bytes": costs.flatbuffer_structure_bytes,
                      "code_flash_bytes": CODE_FLASH_BYTES, "macs": costs.macs, "instructions": costs.instructions},
           "plan": {"planned_arena_bytes": saved["planned_arena_bytes"],
                    "planned_arena_bytes_host": saved.get("planned_arena_bytes_host"),
                    "memory_model_arena_bytes": plan.arena_bytes(POINTER_SIZE),
                    "memory_model_arena_bytes_host": plan.arena_bytes(8),
                    "required_arena_bytes": plan.required_arena_bytes(POINTER_SIZE),
                    "required_arena_bytes_host": plan.required_arena_bytes(8),
                    "report_flash_bytes": saved.get("flash_bytes")},
           "instruction_estimate": {"figures": op_instructions.FIGURES, **op_instructions.MEASURED,
                                    "note": "ESTIMATE (figures fitted to QEMU instruction counts), not measured"},
           "accuracy": saved.get("accuracy")}
    if board is not None:
        # the board gives the static arena `mcuformer build` allocates: the required arena rounded up to 16
        out["board"] = _board(board, arena_size(plan.required_arena_bytes(POINTER_SIZE)),
                              costs.file_bytes + CODE_FLASH_BYTES, costs.instructions)
        out["board"]["flash_split"] = split_flash(costs.file_bytes, CODE_FLASH_BYTES, board.flash,
                                                  board.external_flash.size if board.external_flash else 0).to_dict()
    if measured is not None:
        out["measured"] = measured
    for key in ("import", "low_rank"):
        if key in saved:
            out[key] = saved[key]
    baseline = model_dir.path / "baseline_builtin.tflite"
    if baseline.is_file():
        b = graph_costs(baseline.read_bytes(), POINTER_SIZE)
        out["baseline"] = {"ops": [o.to_dict() for o in b.ops], "arena_bytes": b.arena_bytes,
                           "head_bytes": b.head_bytes, "tail_bytes": b.tail_bytes,
                           "interpreter_tail_bytes": b.interpreter_tail_bytes, "flash_bytes": b.file_bytes,
                           "flatbuffer_structure_bytes": b.flatbuffer_structure_bytes, "macs": b.macs,
                           "measured_host_arena_bytes": (saved.get("baseline") or {}).get("tflm_arena_bytes_host"),
                           "activation_substitutes": (saved.get("import") or {}).get("baseline_activation_substitutes")}
    return out


def _board(board, arena, flash, instructions) -> dict:
    out = {"name": board.name, "core": board.core, "clock_mhz": board.clock_mhz,
           "sram_bytes": board.sram, "arena_bytes": arena, "sram_headroom_bytes": board.sram - arena,
           "flash_bytes": board.flash, "model_and_code_flash_bytes": flash, "flash_headroom_bytes": board.flash - flash}
    if board.clock_mhz and instructions:
        out["latency_ms_estimate"] = instructions / (board.clock_mhz * 1e3)
        out["latency_note"] = "ESTIMATE: estimated instructions at one instruction per cycle, not measured"
    return out


# ---- layout --------------------------------------------------------------------------------------

def _n(v) -> str:
    return "" if v is None else f"{v:,d}"


def _rows(ops, interpreter_tail, structure, head, tail, flash, macs, instructions=None) -> list:
    rows = [[o["label"], _n(o["activation_bytes"]), _n(o["scratch_bytes"]), _n(o["head_in_use"]),
             _n(o["persistent_bytes"]), _n(o["flash_bytes"]), _n(o["macs"]), _n(o["instructions"])] for o in ops]
    rows.append(["interpreter (shared tail)", "", "", "", _n(interpreter_tail), "", "", ""])
    rows.append(["flatbuffer structure", "", "", "", "", _n(structure), "", ""])
    rows.append(["total", "", "", f"head {head:,d}", f"tail {tail:,d}", _n(flash), _n(macs), _n(instructions)])
    return rows


def _model_rows(report) -> list:
    t = report["totals"]
    return _rows(report["ops"], t["interpreter_tail_bytes"], t["flatbuffer_structure_bytes"], t["head_bytes"],
                 t["tail_bytes"], t["flash_bytes"], t["macs"], t["instructions"])


def _baseline_rows(base) -> list:
    return _rows(base["ops"], base["interpreter_tail_bytes"], base["flatbuffer_structure_bytes"], base["head_bytes"],
                 base["tail_bytes"], base["flash_bytes"], base["macs"])


def _table(rows, markdown: bool) -> list:
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(r[i])) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return [fmt(COLUMNS)] + [fmt(r) for r in rows]


def _summary(report) -> list:
    t, plan = report["totals"], report["plan"]
    lines = [f"arena {t['arena_bytes']:,d} B (Cortex-M, 4-byte pointers): the memory model's plan, which "
             f"equals TFLM's arena_used_bytes() (report.json planned_arena_bytes {plan['planned_arena_bytes']:,d}"
             f"; host build {plan['memory_model_arena_bytes_host']:,d}); AllocateTensors needs "
             f"{plan['required_arena_bytes']:,d} B ({plan['required_arena_bytes_host']:,d} B on the host build)",
             f"flash {t['flash_bytes']:,d} B model (report.json {plan['report_flash_bytes']:,d}) + "
             f"{t['code_flash_bytes']:,d} B code (TFLM + kernels + app, measured on the STM32F746 build)"]
    m = report.get("measured")
    if m:
        verdict = "equal" if m["arena_used_bytes"] == plan["memory_model_arena_bytes_host"] else "DIFFERENT"
        lines.append(f"measured: TFLM host runner arena_used_bytes() {m['arena_used_bytes']:,d} B vs "
                     f"{plan['memory_model_arena_bytes_host']:,d} B planned for the host build ({verdict})")
    b = report.get("board")
    if b:
        lines.append(f"board {b['name']} ({b['core']}, {b['clock_mhz']} MHz): SRAM {format_bytes(b['sram_bytes'])}, "
                     f"static arena {b['arena_bytes']:,d} B, headroom {b['sram_headroom_bytes']:,d} B; flash "
                     f"{format_bytes(b['flash_bytes'])}, model + code {b['model_and_code_flash_bytes']:,d} B, "
                     f"headroom {b['flash_headroom_bytes']:,d} B")
        split = b["flash_split"]
        if split["external_flash_capacity"]:
            lines.append(f"flash split on {b['name']}: internal {split['internal_flash_bytes']:,d} of "
                         f"{split['internal_flash_capacity']:,d} B, external {split['external_flash_bytes']:,d} of "
                         f"{split['external_flash_capacity']:,d} B (the model in "
                         f"{split['weights_in']} flash{'' if split['fits'] else '; DOES NOT FIT'})")
        if "latency_ms_estimate" in b:
            lines.append(f"latency ESTIMATE at {b['clock_mhz']} MHz: {b['latency_ms_estimate']:.2f} ms "
                         f"({t['instructions']:,d} estimated instructions at one per cycle; not measured)")
    est = report["instruction_estimate"]
    if est["date"] is None:
        lines.append("instructions: no estimate yet (run benchmarks/op_instructions.py to measure the figures)")
    else:
        figures = "; ".join(f"{op.replace('MCUF_', '').lower()}: " + ", ".join(
            f"{v:g}/{k.replace('_', ' ')}" for k, v in f.items() if v) for op, f in est["figures"].items())
        lines.append(f"instruction figures (instructions per unit, fitted to counts measured under QEMU, "
                     f"{est['device']}, {est['date']}, {est['source']}): {figures}")
    acc = report.get("accuracy")
    if acc:
        lines.append(f"accuracy on {acc['test_images']:,d} test images: float {acc['float']:.4f}, "
                     f"int8 {acc['int8_reference']:.4f}")
    low = report.get("low_rank")
    if low:
        drop = low["flash_bytes_full_rank_predicted"] - low["flash_bytes_predicted"]
        lines.append(f"low rank ({'rank ' + str(low['rank']) if low['rank'] else 'ratio ' + str(low['rank_ratio'])}): "
                     f"flash drop {drop:,d} B ({low['flash_bytes_full_rank_predicted']:,d} -> "
                     f"{low['flash_bytes_predicted']:,d} B predicted), float accuracy change "
                     f"{100 * low['float_accuracy_change']:+.2f} points ({low['float_accuracy_full_rank']:.4f} -> "
                     f"{low['float_accuracy']:.4f})")
    imp = report.get("import")
    if imp:
        lines.append(f"imported tf_keras ViT: activations {', '.join(sorted(set(imp['activations'])))} "
                     f"(tabulated exactly in the int8 LUT), {imp['pooling']} pooling, its own float accuracy "
                     f"{imp['source_float_accuracy']:.4f}, max |output difference| after mapping "
                     f"{imp['max_abs_logit_difference']:.2g}")
    return lines


def _baseline_summary(base) -> str:
    measured = base.get("measured_host_arena_bytes")
    return (f"builtin baseline (baseline_builtin.tflite, TFLiteConverter int8): arena {base['arena_bytes']:,d} B "
            f"planned for Cortex-M" + (f" (host build measured by the tflite-micro wheel: {measured:,d} B)"
                                       if measured else "") + f", flash {base['flash_bytes']:,d} B"
            + ("; its MLPs run x*sigmoid(1.702x) in place of GELU (TFLM has no GELU kernel)"
               if base.get("activation_substitutes") else ""))


def layout(report, markdown: bool = False) -> str:
    """The report as plain-text tables, or as Markdown."""
    title = f"### `{report['model_dir']}`: {report['arch']}" if markdown else f"{report['model_dir']}: {report['arch']}"
    lines = [title, ""] + _table(_model_rows(report), markdown) + [""]
    lines += [f"- {line}" if markdown else line for line in _summary(report)]
    if "baseline" in report:
        summary = _baseline_summary(report["baseline"])
        lines += ["", f"**{summary}**" if markdown else summary] + ([""] if markdown else [])
        lines += _table(_baseline_rows(report["baseline"]), markdown)
    return "\n".join(lines)
