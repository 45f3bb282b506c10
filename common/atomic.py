"""Atomic outputs: a file or folder appears whole or not at all.

Temporary files and folders are created private (0600/0700) by `tempfile`;
they get the modes the user's umask gives before they are renamed into place.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UserError


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it races with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _with_user_mode(path: Path, is_dir: bool) -> Path:
    os.chmod(path, (0o777 if is_dir else 0o666) & ~current_umask())
    return path


@contextlib.contextmanager
def _created_parents(path: Path) -> Iterator[None]:
    """Create `path`'s missing parent folders; remove the ones it created (if still empty) when the block fails."""
    missing = [p for p in path.parents if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in missing:              # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` on success."""
    path = Path(path)
    with _created_parents(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = _with_user_mode(Path(tmp), is_dir=False)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; it replaces `path` only if the block succeeds.

    An existing `path` is an error unless `force` is set. Parent folders this
    creates are removed again when the block fails.
    """
    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"output folder {path} already exists; pass --force to replace it")
    with _created_parents(path):
        tmp = _with_user_mode(Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)),
                              is_dir=True)
        try:
            yield tmp
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
