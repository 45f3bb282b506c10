"""Run a Cortex-M app under QEMU system emulation, counting instructions.

`qemu-system-arm -M mps2-an500` emulates a Cortex-M7 board; the app prints
through semihosting. Instructions per inference come from the project's TCG
plugin (deploy/qemu_plugin/insn_count.c): executed guest instructions between
the app's `mcuf_invoke_begin` and `mcuf_invoke_end` markers around Invoke().
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from common.errors import UserError

from . import tflm
from .app import AppOutput, parse_output

PLUGIN_SOURCE = Path(__file__).resolve().parent / "qemu_plugin" / "insn_count.c"


def qemu_binary() -> str:
    path = shutil.which("qemu-system-arm")
    if path is None:
        raise UserError("qemu-system-arm not found; install it: apt-get install qemu-system-arm")
    return path


def plugin_path() -> Path | None:
    """The instruction-counting plugin, built with the host C compiler (None without one)."""
    out = tflm.cache_dir() / "qemu-plugin" / "libinsn_count.so"
    if out.exists() and out.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
        return out
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.so")
    proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(tmp), str(PLUGIN_SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    tmp.replace(out)
    return out


def symbol_address(elf: Path, name: str) -> int:
    proc = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16) & ~1
    raise UserError(f"{elf} has no symbol {name}; rebuild it with `mcuformer build`")


def _command(elf: Path, machine: str, log: Path) -> list:
    return [qemu_binary(), "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
            "-chardev", f"file,id=semihosting,path={log}",
            "-semihosting-config", "enable=on,target=native,chardev=semihosting", "-kernel", str(elf)]


def run_semihosting(elf: Path, machine: str = "mps2-an500", timeout: int = 300) -> str:
    """What a program writes through semihosting under QEMU (any program; no instruction count)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "semihosting.txt"
        try:
            proc = subprocess.run(_command(elf, machine, log), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"QEMU did not finish {elf} within {timeout} s") from None
        if proc.returncode != 0:
            raise UserError(f"QEMU exited with status {proc.returncode} on {elf}: {proc.stderr.strip()[-300:]}")
        return log.read_text() if log.exists() else ""


INVOKE_MARKERS = ("mcuf_invoke_begin", "mcuf_invoke_end")
MODEL_CHECK_MARKERS = ("mcuf_model_check_begin", "mcuf_model_check_end")   # the CRC-32 check at boot


def run_qemu(elf: Path, machine: str = "mps2-an500", count_instructions: bool = True,
             timeout: int = 900, markers: tuple = INVOKE_MARKERS) -> tuple[AppOutput, list | None]:
    """(the app's output, instructions per Invoke or None when not counted).

    `markers`: the app's begin/end functions to count between (MODEL_CHECK_MARKERS: the boot check)."""
    with tempfile.TemporaryDirectory() as tmp:
        counts, log = Path(tmp) / "insns.txt", Path(tmp) / "semihosting.txt"
        cmd = _command(elf, machine, log)
        plugin = plugin_path() if count_instructions else None
        if plugin is not None:
            begin, end = (symbol_address(elf, s) for s in markers)
            cmd += ["-plugin", f"{plugin},begin={begin:#x},end={end:#x},out={counts}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"QEMU did not finish {elf} within {timeout} s") from None
        if plugin is not None and proc.returncode != 0 and "plugin" in proc.stderr.lower():
            # a QEMU whose plugin API the plugin does not match (it targets API 1, QEMU 7.x)
            return run_qemu(elf, machine, count_instructions=False, timeout=timeout, markers=markers)[0], None
        output = parse_output(log.read_text() if log.exists() else "")
        if proc.returncode != 0:
            raise UserError(f"QEMU exited with status {proc.returncode} on {elf}: {proc.stderr.strip()[-300:]}")
        instructions = [int(v) for v in counts.read_text().split()] if counts.exists() else None
    return output, instructions
