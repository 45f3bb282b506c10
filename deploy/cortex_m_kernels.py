"""The kernel test driver (kernel_test.cc) for Cortex-M7 with CMSIS-NN, run under QEMU mps2-an500.

The case file is compiled in; the driver prints its results as "@@hex" lines
through semihosting, and QEMU's instruction-count plugin (deploy/qemu_plugin)
counts the instructions of each case's Eval (between the driver's
mcuf_invoke_begin/end markers).
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from common.errors import UserError
from . import app, tflm_make, qemu

DRIVER = Path(__file__).resolve().parent.parent / "tflm_ops" / "test" / "kernel_test.cc"


def build_driver(root: Path, cases_bytes: bytes) -> Path:
    """The Cortex-M7 driver with `cases_bytes` (a kernel_cases file) compiled in."""
    from converter.convert import c_array
    if shutil.which("qemu-system-arm") is None:
        raise UserError("qemu-system-arm not found; install it: apt-get install qemu-system-arm")
    target = tflm_make.cortex_m_target()
    # One program per case file: two runs at once (two checkouts share the cache) would otherwise
    # overwrite each other's compiled-in cases between writing them and running the program.
    name = f"kernel_test_cm7_{hashlib.sha1(cases_bytes).hexdigest()[:10]}"
    gen = tflm_make.build_root(root) / "mcuformer" / target.key / "gen" / name
    gen.mkdir(parents=True, exist_ok=True)
    header, body = c_array(cases_bytes, "mcuf_cases")
    for file_name, text in (("model_data.h", header), ("kernel_cases.cc", body)):
        if not (gen / file_name).exists() or (gen / file_name).read_text() != text:   # keep mtimes for make
            (gen / file_name).write_text(text)
    sources = [DRIVER, gen / "kernel_cases.cc", app.PLATFORM_DIR / app.PLATFORM_SOURCES["qemu-m7"],
               app.PLATFORM_DIR / "markers.c", tflm_make.MAKE_DIR / "startup_cortex_m.c"]
    ldflags = [f"-L{tflm_make.MAKE_DIR}", f"-T{app.LINKER_SCRIPTS['qemu-m7']}", "-nostartfiles",
               "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections"]
    return tflm_make.build_program(root, target, name, app_sources=sources,
                               cppflags=["-DMCUF_EMBEDDED_CASES", f"-I{gen}"], ldflags=ldflags)


def run_driver(elf: Path, count_instructions: bool = False, timeout: int = 600) -> tuple:
    """(the results file's bytes, instructions per case's Eval or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        log, counts = Path(tmp) / "semihosting.txt", Path(tmp) / "counts.txt"
        cmd = [qemu.qemu_binary(), "-M", "mps2-an500", "-nographic", "-monitor", "none", "-serial", "none",
               "-chardev", f"file,id=semihosting,path={log}",
               "-semihosting-config", "enable=on,target=native,chardev=semihosting", "-kernel", str(elf)]
        plugin = qemu.plugin_path() if count_instructions else None
        if plugin is not None:
            begin, end = (qemu.symbol_address(elf, s) for s in ("mcuf_invoke_begin", "mcuf_invoke_end"))
            cmd += ["-plugin", f"{plugin},begin={begin:#x},end={end:#x},out={counts}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        text = log.read_text() if log.exists() else ""
        if proc.returncode != 0 or "@@end" not in text:
            tail = " | ".join(text.strip().splitlines()[-2:]) or proc.stderr.strip()[-200:]
            raise UserError(f"the Cortex-M7 kernel driver failed under QEMU: {tail}")
        instructions = [int(v) for v in counts.read_text().split()] if counts.exists() else None
    data = "".join(line.split()[1] for line in text.splitlines() if line.startswith("@@hex "))
    return bytes.fromhex(data), instructions


def measure_cases(root: Path, cases) -> tuple:
    """(parsed results, instructions per case's Eval) of kernel_cases `cases` on the Cortex-M7 under QEMU."""
    from tflm_ops.test import kernel_cases as kc

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.bin"
        kc.write_cases(path, cases)
        results, counts = run_driver(build_driver(root, path.read_bytes()), count_instructions=True)
        (Path(tmp) / "results.bin").write_bytes(results)
        parsed = kc.read_results(Path(tmp) / "results.bin")
    if counts is None or len(counts) != len(cases):
        raise UserError("QEMU's instruction-count plugin gave no counts (is a host C compiler installed?)")
    return parsed, counts
