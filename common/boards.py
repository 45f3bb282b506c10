"""Board profiles as data: configs/boards/<name>.yaml, or a path to your own."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .configfile import check_keys, load_mapping
from .errors import UserError
from .units import parse_bytes

BOARDS_DIR = Path(__file__).resolve().parent.parent / "configs" / "boards"
_KEYS = {"name", "core", "target_arch", "fpu", "sram", "flash", "clock_mhz"}
_REQUIRED = ("name", "core", "sram", "flash")
_CORES = {"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"}


@dataclass(frozen=True)
class Board:
    name: str
    core: str
    sram: int          # bytes of SRAM available to the TFLM arena and the program
    flash: int         # bytes of flash for code + model
    target_arch: str = ""
    fpu: str = ""
    clock_mhz: int = 0


def available_boards() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml"))


def load_board(name_or_path: str) -> Board:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml", ".json") and path.exists()):
        path = BOARDS_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UserError(f"unknown board {name_or_path!r}; known boards: {', '.join(available_boards())} "
                            f"(or pass the path of a board .yaml)")
    data = load_mapping(path, "board")
    where = f"board {path.name}"
    check_keys(data, _KEYS, where, _REQUIRED)
    if data["core"] not in _CORES:
        raise UserError(f"{where}: core {data['core']!r} is not one of {', '.join(sorted(_CORES))}")
    return Board(name=str(data["name"]), core=data["core"],
                 sram=parse_bytes(data["sram"], f"{where}: sram"),
                 flash=parse_bytes(data["flash"], f"{where}: flash"),
                 target_arch=str(data.get("target_arch", "")), fpu=str(data.get("fpu", "")),
                 clock_mhz=int(data.get("clock_mhz", 0)))
