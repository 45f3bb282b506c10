"""Where the TensorFlow Lite Micro source tree is, and where its builds go.

One tree, pinned: `TFLM_ROOT` if set, else the project's cache
(`$MCUFORMER_CACHE`, default `${XDG_CACHE_HOME:-~/.cache}/mcuformer`)
`/tflite-micro`, which `ensure_tflm()` clones at `PINNED_COMMIT` for a user
who has neither. The TFLM Makefile downloads its own third-party code into the
tree on first use. Build outputs live in the cache, never inside the tree.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from common.errors import UserError

TFLM_URL = "https://github.com/tensorflow/tflite-micro"
PINNED_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"


def cache_dir() -> Path:
    if os.environ.get("MCUFORMER_CACHE"):
        return Path(os.environ["MCUFORMER_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mcuformer"


def default_tree() -> Path:
    return cache_dir() / "tflite-micro"


def _is_tree(path: Path) -> bool:
    return (path / MAKEFILE).is_file()


def find_tflm() -> Path | None:
    """The TFLM tree to use, or None when there is none (no download)."""
    if os.environ.get("TFLM_ROOT"):
        root = Path(os.environ["TFLM_ROOT"]).expanduser().resolve()
        if not _is_tree(root):
            raise UserError(f"TFLM_ROOT={root} is not a tflite-micro checkout (no {MAKEFILE}); "
                            f"fix it or unset TFLM_ROOT to use {default_tree()}")
        return root
    return default_tree() if _is_tree(default_tree()) else None


def missing_reason() -> str:
    return (f"no TFLM tree: set TFLM_ROOT to a tflite-micro checkout or run `make tflm` "
            f"(clones {TFLM_URL} at {PINNED_COMMIT[:9]} into {default_tree()})")


def ensure_tflm() -> Path:
    """The TFLM tree; clones the pinned commit into the cache when there is none."""
    root = find_tflm()
    if root is not None:
        return root
    if shutil.which("git") is None:
        raise UserError(f"{missing_reason()}; git is needed for that (apt-get install git)")
    dest = default_tree()
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    print(f"cloning {TFLM_URL} at {PINNED_COMMIT[:9]} into {dest} (once)", flush=True)
    steps = (["git", "clone", "--filter=blob:none", "--no-checkout", TFLM_URL, str(tmp)],
             ["git", "-C", str(tmp), "checkout", "--quiet", PINNED_COMMIT])
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    for step in steps:
        try:
            proc = subprocess.run(step, capture_output=True, text=True, env=env, timeout=1800)
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess(step, 1, "", "timed out after 30 min")
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            raise UserError(f"could not clone TFLM ({last}); {missing_reason()}")
    os.replace(tmp, dest)
    return dest


def tree_commit(root: Path) -> str:
    """The checked-out commit of a tree (for keying its builds), or 'unknown'."""
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"
