"""Run a .tflite in TFLM on the host (deploy/runner/host_runner.cc)."""
from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError

from . import tflm_make


@dataclass
class TflmResult:
    outputs: np.ndarray         # int8 [N, output bytes]
    arena_used_bytes: int


def run_host(root: Path, model_path, inputs: np.ndarray, arena_bytes: int | None = None,
             crc32: int | None = None) -> TflmResult:
    """Outputs of the model for each int8 input (leading axis = images). With `crc32` (the
    converter's), the runner refuses a model whose CRC-32 differs, before TFLM reads it."""
    runner = tflm_make.host_runner(root)
    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    with tempfile.NamedTemporaryFile(suffix=".bin") as handle:
        handle.write(inputs.tobytes())
        handle.flush()
        cmd = [str(runner), *(["--crc32", f"{crc32:08x}"] if crc32 is not None else []),
               str(model_path), handle.name] + ([str(arena_bytes)] if arena_bytes else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        log = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise UserError(f"TFLM host runner failed on {model_path}: {log}")
    result = json.loads(proc.stdout)
    if result["input_bytes"] * len(inputs) != inputs.nbytes:
        raise UserError(f"{model_path} takes {result['input_bytes']} input bytes, "
                        f"but the images have {inputs[0].nbytes}")
    return TflmResult(np.asarray(result["outputs"], np.int8), int(result["arena_used_bytes"]))
