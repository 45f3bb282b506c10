"""Benchmark: measured TFLM arena and instructions, our custom-op model vs the builtin-op baseline.

For a DeiT-Tiny-shaped model (224/16, E192, 3 heads, depth 12, MLP 4x) and an
MCUFormer-shaped one (240/20, depth 13), random weights (sizes and op counts
do not depend on the values), both converted by `converter.convert.convert`
(our custom-op model.tflite and TFLiteConverter's int8 baseline_builtin.tflite),
and both run side by side on the same builds:

* host: TFLM x86_64 (deploy/runner/host_runner.cc): arena_used_bytes;
* QEMU: the example app's Cortex-M7 twin (cortex_m_generic cortex-m7+fp,
  CMSIS-NN, `qemu-system-arm -M mps2-an500`): arena_used_bytes (the 32-bit
  figure that counts on a board) and instructions per Invoke (QEMU TCG plugin
  deploy/qemu_plugin/insn_count.c), on one image.

Built for the STM32F746G-DISCO (`--disco`, after the above): the same models
through `mcuformer build`'s path (deploy.board_build): the weights (6+ MB) in
the board's 16 MiB QSPI (section .mcuformer_ext_weights at 0x90000000), code
and constants in the 1 MiB internal flash, the arena in SRAM; its QEMU twin
(weights in PSRAM at 0x60000000) runs one Fashion-MNIST test image, compared
byte for byte with the numpy reference, and its arena_used with the plan.

Lower bound: the bytes that must be live at once, the larger of the input
image and the residual stream (T x E int8) plus the widest per-token
intermediate (max of E, the MLP hidden width, and one row of int32 scores 4T).

    .venv/bin/python benchmarks/arena.py [--only deit_tiny] [--disco]

Writes benchmarks/results/arena.json (atomically, after each model: a re-run
skips finished models).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import common  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
import numpy as np  # noqa: E402

from common.atomic import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "arena.json"
BUILTIN_QEMU_SLACK = 64 * 1024      # the builtin graph's required arena is not modelled


def _configs():
    from keras_supernet import arch
    return {"deit_tiny": arch.deit_tiny(), "mcuformer_shape": arch.mcuformer_shape()}


def lower_bound(config) -> int:
    tokens = (config.image_size // config.patch_size) ** 2 + (1 if config.pool == "cls" else 0)
    image = config.image_size ** 2 * config.channels
    widest = max(config.embed_dim, max(config.mlp_hidden), 4 * tokens)
    return max(image, tokens * config.embed_dim) + widest


def _convert(config, out: Path) -> dict:
    from converter.convert import ConvertOptions, convert
    from keras_supernet.static_vit import build_vit
    from common.datasets import Dataset

    rng = np.random.default_rng(0)
    shape = (4, config.image_size, config.image_size, config.channels)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = np.arange(4) % config.num_classes
    data = Dataset("random", images, labels, images, labels, [str(i) for i in range(config.num_classes)])
    build_vit(config).save(out.parent / "vit.keras")
    return convert(out.parent / "vit.keras", out, data, ConvertOptions(calib=4, eval_images=2), force=True,
                   progress=False)


def _run_qemu(root, tflite: Path, arena: int, image, label, builtins: bool, work: Path) -> dict:
    """`arena`: the app's static arena."""
    from deploy import app, qemu

    model_cc = app.model_array_cc(tflite, work / tflite.stem)
    spec = app.AppSpec(model_cc, arena, image[None], np.asarray([label]), with_builtins=builtins)
    elf = app.build_app(root, "qemu-m7", spec, work / f"{tflite.stem}.elf")
    start = time.time()
    output, instructions = qemu.run_qemu(elf, "mps2-an500", timeout=1800)
    return {"arena_used_bytes": output.arena_used_bytes, "instructions_per_inference": instructions[0],
            "qemu_seconds": round(time.time() - start, 1)}, output.outputs[0]


def measure(name, config, root, work: Path) -> dict:
    from converter.interpreter import run_tflite
    from deploy import app
    from deploy.host import run_host

    model_dir = work / name
    report = _convert(config, model_dir)
    rng = np.random.default_rng(1)
    image = (rng.integers(0, 256, (config.image_size, config.image_size, config.channels)) - 128).astype(np.int8)
    ours, builtin = model_dir / "model.tflite", model_dir / "baseline_builtin.tflite"
    result = {"arch": config.describe(), "lower_bound_bytes": lower_bound(config),
              "ours": {"flash_bytes": ours.stat().st_size, "planned_arena_bytes": report["planned_arena_bytes"],
                       "planned_arena_bytes_host": report["planned_arena_bytes_host"],
                       "required_arena_bytes": report["required_arena_bytes"],
                       "required_arena_bytes_host": report["required_arena_bytes_host"]},
              "builtin": {"flash_bytes": builtin.stat().st_size}}
    reference = np.asarray(run_tflite(ours, image[None])[0], np.int8)
    qemu_outputs = {}
    for key, path in (("ours", ours), ("builtin", builtin)):
        on_host = run_host(root, path, image[None])
        arena = app.arena_size(report["required_arena_bytes"] if key == "ours"
                               else on_host.arena_used_bytes + BUILTIN_QEMU_SLACK)
        result[key]["host_arena_used_bytes"] = on_host.arena_used_bytes
        result[key]["qemu"], qemu_outputs[key] = _run_qemu(root, path, arena, image, 0, key == "builtin", work)
        result[key]["qemu_outputs_equal_host"] = bool(np.array_equal(qemu_outputs[key], on_host.outputs[0]))
    result["ours"]["qemu_mismatched_outputs_vs_reference"] = int(np.count_nonzero(qemu_outputs["ours"] != reference))
    ours_arena = result["ours"]["qemu"]["arena_used_bytes"]
    builtin_arena = result["builtin"]["qemu"]["arena_used_bytes"]
    result["arena_reduction_vs_builtin"] = round(builtin_arena / ours_arena, 3)
    result["arena_over_lower_bound"] = round(ours_arena / result["lower_bound_bytes"], 3)
    result["arena_error_vs_plan_pct"] = round(100 * (ours_arena - report["planned_arena_bytes"])
                                              / report["planned_arena_bytes"], 3)
    result["instructions_ratio_builtin_over_ours"] = round(
        result["builtin"]["qemu"]["instructions_per_inference"] / result["ours"]["qemu"]["instructions_per_inference"],
        3)
    result["fits_stm32f746"] = {"arena_320KiB": ours_arena <= 320 * 1024,
                                "flash_1MiB": result["ours"]["flash_bytes"] <= 1024 * 1024}
    return result


DISCO = "stm32f746g-disco"


def measure_on_disco(name, config, root, work: Path) -> dict:
    """The model built for the STM32F746G-DISCO (weights placed by the flash split: QSPI) and run in its twin."""
    from common.boards import load_board
    from converter.interpreter import run_tflite
    from deploy.app import section_table
    from deploy.board_build import build_for_board
    from deploy.model_dir import test_images

    model_dir = work / name
    report = _convert(config, model_dir)
    out = work / f"{name}_{DISCO}"
    built = build_for_board(model_dir, load_board(DISCO), out=out, images=1, run_qemu=True)
    sections, twin = built["sections"], built["qemu"]
    board_table = section_table(out / f"app_{DISCO}.elf")
    twin_table = section_table(out / "app_qemu.elf")
    images, _ = test_images("fashion_mnist", 1, (config.image_size, config.image_size, config.channels))
    reference = np.asarray(run_tflite(model_dir / "model.tflite", images), np.int8)
    ext_size, ext_address = board_table[".mcuformer_ext_weights"]
    return {"arch": config.describe(), "model_flash_bytes": built["model_flash_bytes"],
            "flash_split_predicted": built["flash_split_predicted"],
            "sections_board": {k: {"bytes": v[0], "address": f"{v[1]:#010x}"} for k, v in board_table.items()
                               if v[1] or k in (".isr_vector", ".text")},
            "internal_flash_bytes": sections["internal_flash"], "external_flash_bytes": ext_size,
            "external_address": f"{ext_address:#010x}",
            "qemu_twin_external_address": f"{twin_table['.mcuformer_ext_weights'][1]:#010x}",
            "internal_flash_within_1MiB": sections["internal_flash"] <= 1 << 20,
            "arena_bytes": built["arena_bytes"], "planned_arena_bytes": report["planned_arena_bytes"],
            "qemu_arena_used_bytes": twin["arena_used_bytes"],
            "arena_equals_plan": twin["arena_used_bytes"] == report["planned_arena_bytes"],
            "qemu_mismatched_outputs_vs_reference": int(np.count_nonzero(np.asarray(twin["outputs"], np.int8)
                                                                          != reference)),
            "qemu_instructions_per_inference": (twin["instructions_per_inference"] or [None])[0]}


def main() -> int:
    from deploy import tflm

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=list(_configs()))
    parser.add_argument("--disco", action="store_true", help=f"also build each model for {DISCO} (weights in QSPI) "
                                                              "and run its QEMU twin")
    args = parser.parse_args()
    root = tflm.find_tflm()
    if root is None:
        print(f"error: {tflm.missing_reason()}", file=sys.stderr)
        return 2
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in _configs().items():
            if (args.only and name != args.only) or name in results["models"]:
                continue
            print(f"{name}: converting and running (host + QEMU)", flush=True)
            results["models"][name] = measure(name, config, root, Path(tmp))
            results.update(command="benchmarks/arena.py" + (f" --only {args.only}" if args.only else ""),
                           device="QEMU mps2-an500 (Cortex-M7), cortex_m_generic cortex-m7+fp CMSIS-NN; "
                                  "host TFLM x86_64", machine=platform.platform(),
                           tflm_commit=tflm.tree_commit(root)[:9])
            write_json(RESULTS, results)
            print(json.dumps(results["models"][name], indent=1), flush=True)
        for name, config in _configs().items():
            done = results.get(DISCO, {})
            if not args.disco or (args.only and name != args.only) or name in done:
                continue
            print(f"{name}: building for {DISCO} (weights in QSPI) and running its QEMU twin", flush=True)
            results[DISCO] = dict(done, **{name: measure_on_disco(name, config, root, Path(tmp))})
            results[DISCO + "_command"] = "benchmarks/arena.py --disco"     # each model once; reruns skip done ones
            write_json(RESULTS, results)
            print(json.dumps(results[DISCO][name], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
