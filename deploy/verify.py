"""`mcuformer verify`: the converted model in the Python reference, in TFLM on the
host and (optionally) in TFLM under QEMU Cortex-M7, output byte for byte.

The Python reference (converter/interpreter.py) is the oracle; every TFLM run
is compared to it. Each run gets exactly the arena the memory model says its
build requires (rounded up to 16), so a short prediction fails here. The arena
that counts for a board is the 32-bit one (QEMU); the host's x86_64 arena is
larger (pointer-sized structs). Every arena number is named by its build.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from common.errors import UserError

from . import app, host, qemu, tflm
from .model_dir import read_model_dir, test_images

QEMU_ARENA_LIMIT = 4 * 1024 * 1024 - 128 * 1024   # mps2-an500 SSRAM2/3 less stack and data


def _compare(outputs, reference, labels, arena_used, planned, arena) -> dict:
    """One TFLM run: `planned`, `arena` (the arena it was given) are its own build's."""
    outputs = np.asarray(outputs, np.int8)
    return {"mismatched_outputs": int(np.count_nonzero(outputs != reference)),
            "int8_accuracy": float(np.mean(outputs.argmax(axis=1) == labels)),
            "arena_bytes": int(arena), "arena_used_bytes": int(arena_used), "planned_arena_bytes": int(planned),
            "arena_error_pct": round(100.0 * (arena_used - planned) / planned, 3)}


def verify(model_dir, images: int = 100, data: str = "fashion_mnist", use_qemu: bool = False) -> dict:
    model = read_model_dir(model_dir)
    x, y = test_images(data, images, model.input_shape)
    root = tflm.find_tflm()
    if use_qemu and root is None:
        raise UserError(f"--qemu needs TFLM: {tflm.missing_reason()}")
    from converter.interpreter import run_tflite     # imports TensorFlow: after the checks

    reference = np.asarray(run_tflite(model.tflite, x), np.int8)
    result = {"model_dir": str(model.path), "images": int(images),
              "int8_accuracy": float(np.mean(reference.argmax(axis=1) == y)),
              "planned_arena_bytes_cortex_m": model.planned_arena_bytes,
              "required_arena_bytes_cortex_m": model.report.get("required_arena_bytes"),
              "planned_arena_bytes_host": model.report.get("planned_arena_bytes_host"),
              "required_arena_bytes_host": model.report.get("required_arena_bytes_host"),
              "arena_used_bytes": None, "mismatched_outputs": None}
    if root is None:
        result["host"] = {"skipped": tflm.missing_reason()}
    else:
        arena = app.arena_size(model.required_arena_bytes_host)
        on_host = host.run_host(root, model.tflite, x, arena_bytes=arena, crc32=model.crc32)
        result["host"] = _compare(on_host.outputs, reference, y, on_host.arena_used_bytes,
                                  model.planned_arena_bytes_host, arena)
    if use_qemu:
        arena = app.arena_size(model.required_arena_bytes)
        if arena > QEMU_ARENA_LIMIT:
            raise UserError(f"the model's arena ({arena} B) is too large for the QEMU twin's "
                            f"{QEMU_ARENA_LIMIT} B of RAM")
        spec = app.AppSpec(model.model_data_cc, arena, x, y)
        with tempfile.TemporaryDirectory() as tmp:
            elf = app.build_app(root, "qemu-m7", spec, Path(tmp) / "app_qemu.elf")
            output, instructions = qemu.run_qemu(elf, "mps2-an500")
        result["qemu"] = _compare(output.outputs, reference, y, output.arena_used_bytes,
                                  model.planned_arena_bytes, arena)
        result["qemu"]["machine"] = "mps2-an500"
        result["qemu"]["instructions_per_inference"] = (
            int(np.median(instructions)) if instructions else None)
    runs = [r for r in (result.get("host"), result.get("qemu")) if r and "skipped" not in r]
    if runs:
        result["mismatched_outputs"] = sum(r["mismatched_outputs"] for r in runs)
        measured = result.get("qemu") or result["host"]     # the 32-bit arena when measured
        result["arena_used_bytes"] = measured["arena_used_bytes"]
        result["arena_measured_on"] = "qemu-cortex-m7" if "qemu" in result else "host-x86_64"
    return result
