"""The load-path fuzzer (deploy/runner/fuzz_load.cc): built with ASan/UBSan
through the TFLM Makefile, run on seed models for a bounded number of
executions or seconds. A run that ends in a sanitizer report, a signal or a
hang is a crash; the mutant that caused it is kept."""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

from . import tflm_make

@dataclass
class FuzzRun:
    command: list
    summary: dict | None        # the harness's counts; None when it crashed
    crash_report: str | None    # the end of its stderr, when it crashed
    crash_input: Path | None    # the mutant that crashed it

    @property
    def crashed(self) -> bool:
        return self.summary is None


def build_fuzzer(root: Path, sanitize: bool = True) -> Path:
    flags = list(tflm_make.SANITIZE_FLAGS) if sanitize else []
    return tflm_make.build_program(
        root, tflm_make.HOST, "fuzz_load" + ("_asan" if sanitize else ""),
        app_sources=[tflm_make.RUNNER_DIR / "fuzz_load.cc", tflm_make.RUNNER_DIR / "op_resolver.cc",
                     *tflm_make.MODEL_GUARD_SOURCES],
        cppflags=flags, kernel_cppflags=flags, ldflags=flags)


def run_fuzzer(binary: Path, seeds, crash_out: Path, *, max_execs: int | None = None,
               seconds: float | None = None, rng_seed: int = 1, check_crc: bool = False,
               check_model: bool = True, timeout: float = 3600) -> FuzzRun:
    """One run of the harness on `seeds` (valid .tflite paths). `check_crc=False` lets
    mutants past the CRC; `check_model=False` also past the structural checks (TFLM alone)."""
    if not max_execs and not seconds:
        raise UserError("give the fuzzer a bound: executions or seconds")
    cmd = [str(binary), "--seed", str(rng_seed), "--crash-out", str(crash_out)]
    cmd += ([] if check_crc else ["--no-crc"]) + ([] if check_model else ["--no-checks"])
    cmd += ["--max-execs", str(max_execs)] if max_execs else []
    cmd += ["--seconds", str(seconds)] if seconds else []
    cmd += [str(s) for s in seeds]
    crash_out.unlink(missing_ok=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return FuzzRun(cmd, None, f"no result within {timeout} s", crash_out if crash_out.exists() else None)
    if proc.returncode == 2 and not crash_out.exists():
        raise UserError(f"the fuzzer did not start: {proc.stderr.strip()[-300:]}")
    sanitizer = "Sanitizer" in proc.stderr or "runtime error" in proc.stderr
    if proc.returncode != 0 or sanitizer:
        return FuzzRun(cmd, None, proc.stderr.strip()[-4000:] or f"exit status {proc.returncode}",
                       crash_out if crash_out.exists() else None)
    return FuzzRun(cmd, json.loads(proc.stdout), None, None)
