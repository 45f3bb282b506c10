"""Benchmark: what the model CRC-32 check at boot costs on a Cortex-M7.

Flash: arm-none-eabi-size on the object of deploy/runner/model_crc.cc as the
example app's CMSIS-NN build compiles it (code + its 64-byte table), and the
sizes of the linked symbols. Instructions: the example app for QEMU
mps2-an500 (Cortex-M7) with the seed models of tests/fuzz_seeds.py (three
sizes); the project's instruction-count plugin counts between the app's
mcuf_model_check_begin/_end markers around the check (once per boot).

    .venv/bin/python benchmarks/integrity_cost.py

Writes benchmarks/results/integrity_cost.json (atomically).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from common import atomic  # noqa: E402
from common.errors import UserError  # noqa: E402
from mcuformer.cli import run_guarded  # noqa: E402

APP_NAME = "image_classification-qemu-m7"


def crc_object_sizes(root) -> dict:
    """arm-none-eabi-size of model_crc.cc's object in the app's Cortex-M7 build."""
    from deploy import tflm_make

    source = (tflm_make.RUNNER_DIR / "model_crc.cc").resolve()
    target = tflm_make.cortex_m_target()
    obj = Path(f"{tflm_make.build_root(root) / 'mcuformer' / target.key / 'apps' / APP_NAME}{source}.o")
    proc = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"arm-none-eabi-size failed on {obj}: {proc.stderr.strip()}")
    text, data, bss = (int(v) for v in proc.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data}


def linked_symbols(elf: Path) -> dict:
    """Sizes of the CRC function and its table in the linked app."""
    proc = subprocess.run(["arm-none-eabi-nm", "-S", "-C", str(elf)], capture_output=True, text=True, check=True)
    sizes = {}
    for line in proc.stdout.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and "Crc32" in parts[3]:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


def main() -> int:
    from common import datasets
    from deploy import app, qemu, tflm
    from tests.fuzz_seeds import write_seed_models

    root = tflm.find_tflm()
    if root is None:
        raise UserError(tflm.missing_reason())
    fashion = datasets.load_fashion_mnist()
    image = (fashion.x_test[:1].astype(np.int16) - 128).astype(np.int8)
    rows, symbols = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in write_seed_models(Path(tmp) / "seeds", fashion):
            folder = Path(tmp) / seed.stem
            folder.mkdir()
            spec = app.AppSpec(app.model_array_cc(seed, folder), arena_bytes=64 * 1024, images=image,
                               labels=fashion.y_test[:1])
            elf = app.build_app(root, "qemu-m7", spec, folder / "app_qemu.elf")
            _, counts = qemu.run_qemu(elf, markers=qemu.MODEL_CHECK_MARKERS)
            if not counts:
                raise UserError("QEMU gave no instruction count (the plugin did not load)")
            rows.append({"model": seed.stem, "model_bytes": seed.stat().st_size, "instructions": counts[0]})
            symbols = linked_symbols(elf)
            print(f"{seed.stem:16s} {rows[-1]['model_bytes']:>8,d} B  {counts[0]:>10,d} instructions", flush=True)
        sizes = crc_object_sizes(root)
    rows.sort(key=lambda r: r["model_bytes"])
    slope = (rows[-1]["instructions"] - rows[0]["instructions"]) / (rows[-1]["model_bytes"] - rows[0]["model_bytes"])
    out = Path(__file__).resolve().parent / "results" / "integrity_cost.json"
    atomic.write_json(out, {
        "command": ".venv/bin/python benchmarks/integrity_cost.py",
        "device": "QEMU mps2-an500 (Cortex-M7), cortex_m_generic cortex-m7+fp CMSIS-NN build of the example app",
        "crc_object": sizes, "linked_symbols_bytes": symbols, "boot_check": rows,
        "instructions_per_byte": round(slope, 3)})
    print(f"model_crc.o: {sizes['flash']} B of flash; {slope:.2f} instructions per model byte; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
