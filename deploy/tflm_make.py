"""Builds through the TFLM Makefile: the microlite library and the project's programs.

Every build is one `make` run of TFLM's own Makefile followed by
`deploy/make/mcuformer.mk`, so the library is TFLM's `microlite` target and
the project's kernels (`tflm_ops/src/*.cc`) and apps are compiled with exactly
its compiler, flags and defines (`-DTF_LITE_STATIC_MEMORY` changes struct
layouts). Outputs go to the cache (`<cache>/tflm-build/<commit>/`), keyed by
the TFLM commit; make keeps them incremental, so an interrupted build resumes.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

from . import tflm

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAKE_DIR = Path(__file__).resolve().parent / "make"
RUNNER_DIR = Path(__file__).resolve().parent / "runner"
KERNEL_DIR = PROJECT_ROOT / "tflm_ops" / "src"
ARM_APT = "gcc-arm-none-eabi libnewlib-arm-none-eabi"
# Programs of two checkouts sharing the cache must not overwrite each other (their
# objects are apart already: object paths hold the source paths).
CHECKOUT_KEY = hashlib.sha1(str(PROJECT_ROOT).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Target:
    key: str                 # folder name of its builds
    make_vars: tuple         # TFLM Makefile variables selecting it
    cross: bool = False


HOST = Target("host", ())


def cortex_m_target(target_arch: str = "cortex-m7+fp", fpu: str = "fpv5-sp-d16") -> Target:
    """cortex_m_generic with CMSIS-NN, using the system's arm-none-eabi toolchain."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None or not Path(gcc).with_name("arm-none-eabi-g++").exists():
        raise UserError(f"arm-none-eabi-gcc/g++ not found; install them: apt-get install {ARM_APT}")
    variables = ("TARGET=cortex_m_generic", f"TARGET_ARCH={target_arch}", f"FPU={fpu}",
                 "OPTIMIZED_KERNEL_DIR=cmsis_nn", f"TARGET_TOOLCHAIN_ROOT={Path(gcc).parent}/")
    return Target(f"{target_arch}_{fpu}_cmsis_nn", variables, cross=True)


def project_python_env() -> dict:
    """The environment for TFLM's Makefile and scripts: they run `python3` scripts that need
    numpy and Pillow, so this project's interpreter comes first on PATH, whatever the user's PATH.
    A UserError when that interpreter is not there as `python3` or lacks them."""
    import importlib.util

    bin_dir = Path(sys.executable).parent
    missing = [name for name, module in (("numpy", "numpy"), ("Pillow", "PIL"))
               if importlib.util.find_spec(module) is None]
    if not (bin_dir / "python3").exists() or missing:
        lacks = f"lacks {' and '.join(missing)}" if missing else f"is not {bin_dir / 'python3'}"
        raise UserError(f"TFLM's build scripts run this project's Python, and {sys.executable} {lacks}; "
                        f"run `make setup` (a .venv with requirements.txt) and use .venv/bin/mcuformer")
    env = dict(os.environ, PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    # Under an outer make (`make test`), MAKELEVEL makes TFLM's inner make print "make[1]: Entering
    # directory" lines, which create_tflm_tree.py reads as file names; TFLM's runs stand alone.
    for inherited in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(inherited, None)
    return env


def build_root(root: Path) -> Path:
    """BASE_GENDIR for a tree: in the cache, keyed by the tree's commit (absolute: make runs in the tree)."""
    return (tflm.cache_dir() / "tflm-build" / tflm.tree_commit(root)[:12]).absolute()


def kernel_sources() -> list:
    return sorted(KERNEL_DIR.glob("*.cc"))


_held_locks: set = set()


@contextlib.contextmanager
def target_lock(root: Path, target: Target):
    """Serialises builds of one target across processes (re-entrant within one)."""
    path = build_root(root) / f"{target.key}.lock"
    if path in _held_locks:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held_locks.add(path)
        try:
            yield
        finally:
            _held_locks.discard(path)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _first_error(log: str) -> str:
    lines = log.splitlines()
    for pattern in (r"overflowed by \d+ bytes", r"undefined reference|error:", r"\berror\b|Error|No rule to make"):
        for line in lines:
            if re.search(pattern, line):
                return line.strip()[:300]
    return (lines or ["make failed"])[-1][:300]


def run_make(root: Path, target: Target, goal: str, variables: dict, what: str) -> None:
    """One make run of TFLM's Makefile plus mcuformer.mk, with a progress bar."""
    from tqdm import tqdm

    env = project_python_env()        # before anything is written
    base = build_root(root)
    log_path = base / "logs" / f"{target.key}-{re.sub(r'[^A-Za-z0-9_.-]', '_', what)}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["make", "-f", tflm.MAKEFILE, "-f", str(MAKE_DIR / "mcuformer.mk"), f"-j{min(2, os.cpu_count() or 1)}",
           "V=1", f"BASE_GENDIR={base}", *target.make_vars,
           *(f"{k}={v}" for k, v in variables.items()), goal]
    if shutil.which("make") is None:
        raise UserError("make not found; install it: apt-get install make")
    with target_lock(root, target), open(log_path, "w") as log, \
            tqdm(desc=f"{what} ({target.key})", unit=" files", leave=False) as bar:
        log.write(" ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if " -c " in line:
                bar.update(1)
        proc.wait()
    if proc.returncode != 0:
        raise UserError(f"{what} failed through the TFLM Makefile: {_first_error(log_path.read_text())} "
                        f"(full log: {log_path})")


def build_program(root: Path, target: Target, name: str, *, app_sources, cppflags=(), ldflags=(),
                  kernel_cppflags=(), kernels=None, out: Path | None = None) -> Path:
    """Compile and link one program against the target's microlite library.

    `name` keys the app's object folder: programs whose app flags differ need
    different names. Kernel objects are shared by all programs of a target
    with the same `kernel_cppflags`.
    """
    base = build_root(root) / "mcuformer" / target.key
    kernels = kernel_sources() if kernels is None else kernels
    kernel_key = hashlib.sha1(" ".join(kernel_cppflags).encode()).hexdigest()[:8]
    # make runs inside the TFLM tree: every path handed to it must be absolute
    program = Path(out).absolute() if out else base / "bin" / CHECKOUT_KEY / name
    for path in (PROJECT_ROOT, base, program):
        if " " in str(path):
            raise UserError(f"{path} contains a space, which make cannot handle; move it or set MCUFORMER_CACHE")
    variables = {
        "MCUF_PROGRAM": program,
        "MCUF_OBJDIR": base / "apps" / name,
        "MCUF_KERNEL_OBJDIR": base / f"kernels-{kernel_key}",
        "MCUF_KERNEL_SRCS": " ".join(str(Path(s).resolve()) for s in kernels),
        "MCUF_APP_SRCS": " ".join(str(Path(s).resolve()) for s in app_sources),
        "MCUF_CPPFLAGS": " ".join([f"-I{PROJECT_ROOT}", *cppflags]),
        "MCUF_KERNEL_CPPFLAGS": " ".join([f"-I{PROJECT_ROOT}", *kernel_cppflags]),
        "MCUF_LDFLAGS": " ".join(ldflags),
    }
    run_make(root, target, "mcuf_program", variables, f"building {name}")
    return program


def build_library(root: Path, target: Target) -> None:
    run_make(root, target, "microlite", {}, "building TFLM microlite")


# What a host program runs before TFLM reads a model: the CRC-32 and the structural checks.
MODEL_GUARD_SOURCES = (RUNNER_DIR / "model_crc.cc", RUNNER_DIR / "model_checks.cc")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")


@functools.lru_cache(maxsize=None)
def host_runner(root: Path, sanitize: bool = False) -> Path:
    """The host runner (deploy/runner/host_runner.cc), built if needed; `sanitize`: with ASan/UBSan."""
    flags = list(SANITIZE_FLAGS) if sanitize else []
    return build_program(root, HOST, "host_runner" + ("_asan" if sanitize else ""),
                         app_sources=[RUNNER_DIR / "host_runner.cc", RUNNER_DIR / "op_resolver.cc",
                                      *MODEL_GUARD_SOURCES],
                         cppflags=flags, kernel_cppflags=flags, ldflags=flags)


def main(argv=None) -> int:
    """`python -m deploy.tflm_make` (`make tflm`): the pinned TFLM tree and both microlite libraries.

    `--or-skip` (`make test`, `make demo`): when the tree or a toolchain cannot be had, say in
    one line which tier will skip and why, and succeed.
    """
    from common.errors import UserError as _UserError

    or_skip = "--or-skip" in (sys.argv[1:] if argv is None else argv)
    try:
        project_python_env()          # no interpreter for TFLM's scripts: say so before cloning anything
        root = tflm.ensure_tflm()
        build_library(root, HOST)
        build_library(root, cortex_m_target())
    except _UserError as exc:
        if or_skip:
            print(f"TFLM tier will skip (kernel, runner, QEMU and build tests; no measured arena): {exc}")
            return 0
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"TFLM {tflm.tree_commit(root)[:9]} at {root}; libraries in {build_root(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
