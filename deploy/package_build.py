"""Compile a generated library as Arduino would, for a Cortex-M, and link it for QEMU.

Arduino compiles every .cpp/.c under the library's src/ with src/ as its only
include path, and the sketch (`.ino` as C++ after `#include <Arduino.h>`)
against the core; here the core is deploy/arduino/shim. The program links
with the project's startup file and the QEMU mps2-an500 memory map
(deploy/make), the sketch's Serial writing through semihosting.

TFLM's part of src/ (tensorflow/, third_party/) is the same for every model:
it is compiled once per (its content, the flags) into an archive in the
project cache, so a rerun compiles only the model, the kernels and the API.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

from .tflm_make import ARM_APT, MAKE_DIR, PROJECT_ROOT
from .tflm_tree import CONFIG_HEADER, TFLM_TOP_DIRS, is_tflm_file

SHIM_DIR = Path(__file__).resolve().parent / "arduino" / "shim"
HARNESS_SOURCES = (SHIM_DIR / "arduino_main.cpp", MAKE_DIR / "platform" / "semihosting.cc",
                   MAKE_DIR / "platform" / "markers.c", MAKE_DIR / "startup_cortex_m.c")


@dataclass(frozen=True)
class Cpu:
    name: str
    flags: tuple


CORTEX_M7 = Cpu("cortex-m7", ("-mcpu=cortex-m7", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-mthumb"))
CORTEX_M4 = Cpu("cortex-m4", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb"))
COMMON_FLAGS = ("-Os", "-ffunction-sections", "-fdata-sections", "-Wall", "-DARDUINO=10819")
CXX_FLAGS = ("-std=gnu++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
C_FLAGS = ("-std=gnu11",)
JOBS = 2


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f"{name} not found; install it: apt-get install {ARM_APT}")
    return path


def _compile_one(unit: Path, obj: Path, cpu: Cpu, includes: list) -> str | None:
    is_c = unit.suffix == ".c"
    compiler = _tool("arm-none-eabi-gcc" if is_c else "arm-none-eabi-g++")
    obj.parent.mkdir(parents=True, exist_ok=True)
    cmd = [compiler, *cpu.flags, *COMMON_FLAGS, *(C_FLAGS if is_c else CXX_FLAGS),
           *(f"-I{p}" for p in includes), "-c", str(unit), "-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return None if proc.returncode == 0 else f"{unit.name} does not compile for {cpu.name}:\n{proc.stderr[-2000:]}"


def _compile_all(jobs: list, cpu: Cpu) -> list:
    """jobs: (unit, object, includes); compiled JOBS at a time."""
    with ThreadPoolExecutor(JOBS) as pool:
        errors = [e for e in pool.map(lambda j: _compile_one(j[0], j[1], cpu, j[2]), jobs) if e]
    if errors:
        raise UserError(errors[0])
    return [j[1] for j in jobs]


def _units(src: Path) -> list:
    return sorted(p for p in src.rglob("*") if p.suffix in (".cpp", ".c"))


def tflm_archive(src: Path, cpu: Cpu) -> Path:
    """libtflm.a of src/'s TFLM part for `cpu`, from the cache when its sources and flags were seen."""
    from .tflm import cache_dir

    digest = hashlib.sha1(" ".join([*cpu.flags, *COMMON_FLAGS, *CXX_FLAGS, *C_FLAGS]).encode())
    tflm_files = sorted(p for top in TFLM_TOP_DIRS for p in (src / top).rglob("*") if p.is_file())
    for path in [*tflm_files, src / CONFIG_HEADER]:
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    folder = cache_dir() / "package-objects" / f"{cpu.name}-{digest.hexdigest()[:16]}"
    archive = folder / "libtflm.a"
    if archive.exists():
        return archive
    work = folder / f"tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    units = [u for u in _units(src) if is_tflm_file(u.relative_to(src))]
    objects = _compile_all([(u, work / (str(u.relative_to(src)) + ".o"), [src]) for u in units], cpu)
    proc = subprocess.run([_tool("arm-none-eabi-ar"), "rcs", str(work / "libtflm.a"), *map(str, objects)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"arm-none-eabi-ar failed: {proc.stderr.strip()[-300:]}")
    os.replace(work / "libtflm.a", archive)
    shutil.rmtree(work, ignore_errors=True)
    return archive


def compile_arduino_library(lib: Path, cpu: Cpu, work: Path) -> tuple:
    """(objects of the library's own sources and its example sketches, TFLM's archive)."""
    src = lib / "src"
    jobs = [(u, work / (str(u.relative_to(src)) + ".o"), [src]) for u in _units(src)
            if not is_tflm_file(u.relative_to(src))]
    for ino in sorted((lib / "examples").rglob("*.ino")):
        unit = work / "sketch" / (ino.stem + ".ino.cpp")        # as the Arduino IDE does
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(f'#include <Arduino.h>\n#line 1 "{ino.name}"\n' + ino.read_text())
        jobs.append((unit, unit.with_suffix(".o"), [src, SHIM_DIR, ino.parent]))
    archive = tflm_archive(src, cpu)
    return _compile_all(jobs, cpu), archive


def link_for_qemu(lib: Path, objects: list, archive: Path, cpu: Cpu, out: Path) -> Path:
    """The sketch program: the library's objects, TFLM's archive, the shim core and the startup file."""
    work = out.parent / "harness"
    harness = _compile_all([(s, work / (s.name + ".o"), [PROJECT_ROOT, SHIM_DIR, lib / "src"])
                            for s in HARNESS_SOURCES], cpu)
    cmd = [_tool("arm-none-eabi-g++"), *cpu.flags, *map(str, objects), *map(str, harness), str(archive),
           f"-L{MAKE_DIR}", "-Tmps2_an500.ld", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           "-Wl,--gc-sections", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"the {lib.name} sketch does not link for {cpu.name}: {proc.stderr.strip()[-1500:]}")
    return out


def main(argv=None) -> int:
    """`python -m deploy.package_build LIBRARY [--cpu cortex-m4]`: compile a generated Arduino
    library as Arduino does, link its sketch for QEMU, print the ELF's sections and the time
    taken, and on Cortex-M7 run it under QEMU and print what the sketch printed."""
    import argparse
    import json
    import sys
    import tempfile
    import time

    from .app import section_sizes
    from .qemu import run_semihosting

    parser = argparse.ArgumentParser(prog="python -m deploy.package_build", description=main.__doc__)
    parser.add_argument("library", type=Path, help="folder written by `mcuformer arduino-lib`")
    parser.add_argument("--cpu", choices=[c.name for c in (CORTEX_M7, CORTEX_M4)], default=CORTEX_M7.name)
    args = parser.parse_args(argv)
    cpu = next(c for c in (CORTEX_M7, CORTEX_M4) if c.name == args.cpu)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.time()
            objects, archive = compile_arduino_library(args.library.absolute(), cpu, Path(tmp))
            elf = link_for_qemu(args.library.absolute(), objects, archive, cpu, Path(tmp) / "sketch.elf")
            print(f"{cpu.name}: compiled and linked in {time.time() - started:.0f} s; "
                  f"{json.dumps(section_sizes(elf))}")
            if cpu is CORTEX_M7:
                print(run_semihosting(elf), end="")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
