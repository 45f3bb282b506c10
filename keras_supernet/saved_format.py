"""Which saved-model files the static ViT loader reads, checked without TensorFlow.

This project builds and saves models with tf_keras 2 (`mcuformer finetune`):
a `.keras` file, a `.h5` file or a SavedModel folder. A Keras 3 file fails
deep inside tf_keras (an InputLayer it cannot deserialize); it is recognised
here by the Keras version the file records and refused in one line.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from common.errors import UserError

ACCEPTED = "a tf_keras 2 .keras or .h5 file or a SavedModel folder, as `mcuformer finetune` writes"


def saved_keras_version(path) -> str | None:
    """The Keras version a .keras or .h5 file records (None when it records none)."""
    path = Path(path)
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "metadata.json" in names:
                    return str(json.loads(archive.read("metadata.json")).get("keras_version")) or None
        except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise UserError(f"{path} is not a valid .keras file (a zip with metadata.json and config.json); "
                            f"pass {ACCEPTED}") from None
        return None
    if path.suffix == ".h5":
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                version = handle.attrs.get("keras_version")
        except OSError:
            raise UserError(f"{path} is not a valid .h5 file; pass {ACCEPTED}") from None
        return version.decode() if isinstance(version, bytes) else (str(version) if version is not None else None)
    return None


def check_loadable(path) -> Path:
    """One clear line for a path the loader cannot read: missing, another format, or Keras 3."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model {path} does not exist; pass {ACCEPTED}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise UserError(f"{path} is a folder but not a SavedModel (no saved_model.pb); pass {ACCEPTED}")
        return path
    if path.suffix not in (".keras", ".h5"):
        raise UserError(f"{path}: unknown model format {path.suffix or '(no suffix)'!r}; pass {ACCEPTED}")
    version = saved_keras_version(path)
    major = version.split(".")[0] if version else ""
    if major.isdigit() and int(major) >= 3:
        raise UserError(f"{path} was saved by Keras {version} (Keras 3), which this project cannot read; "
                        f"pass {ACCEPTED}")
    return path
