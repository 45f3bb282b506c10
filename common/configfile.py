"""Small-data configs (YAML/JSON): load and check keys, one clear error each."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .errors import UserError


def load_mapping(path: str | Path, what: str = "config") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{what} file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {first}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} file {path} must hold a mapping of keys to values")
    return data


def check_keys(data: dict, allowed, where: str, required=()) -> None:
    """Reject unknown keys (naming the valid ones) and missing required keys."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; valid keys are {', '.join(sorted(allowed))}")
    missing = [k for k in required if k not in data]
    if missing:
        raise UserError(f"{where}: missing required key {missing[0]!r}")
