"""Board profiles as data: configs/boards/<name>.yaml, or a path to your own.

A board's memory regions: SRAM (the TFLM arena and the program's RAM), internal
flash (code + constants) and, optionally, external memory-mapped flash
(`external_flash`: QSPI/OSPI NOR read in place, e.g. 16 MiB at 0x90000000 on the
STM32F746G-DISCO) that can hold the model's weights when internal flash cannot.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .configfile import check_keys, load_mapping
from .errors import UserError
from .units import parse_bytes

BOARDS_DIR = Path(__file__).resolve().parent.parent / "configs" / "boards"
_KEYS = {"name", "core", "target_arch", "fpu", "sram", "flash", "clock_mhz", "external_flash"}
_REQUIRED = ("name", "core", "sram", "flash")
_EXTERNAL_KEYS = {"kind", "size", "base", "read_note"}
_CORES = {"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"}


@dataclass(frozen=True)
class ExternalFlash:
    """Memory-mapped external flash: the CPU reads it in place at `base` (XIP)."""
    size: int               # bytes
    base: int               # address of its memory-mapped window
    kind: str = "QSPI NOR"
    read_note: str = ""     # what a read costs on silicon (slower than internal flash)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "size": self.size, "base": f"{self.base:#010x}", "read_note": self.read_note}


@dataclass(frozen=True)
class Board:
    name: str
    core: str
    sram: int          # bytes of SRAM available to the TFLM arena and the program
    flash: int         # bytes of internal flash for code (+ the model unless it goes external)
    target_arch: str = ""
    fpu: str = ""
    clock_mhz: int = 0
    external_flash: ExternalFlash | None = None

    def regions(self) -> dict:
        """{region: bytes}: the budgets a deployment must fit, one per memory region."""
        out = {"sram": self.sram, "internal_flash": self.flash}
        if self.external_flash:
            out["external_flash"] = self.external_flash.size
        return out


def available_boards() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml"))


def _address(value, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        address = value
    else:
        try:
            address = int(str(value), 0)
        except ValueError:
            raise UserError(f"{where}: base {value!r} is not an address; write it like 0x90000000") from None
    if not 0 <= address < 1 << 32:
        raise UserError(f"{where}: base {value!r} is outside the 32-bit address space")
    return address


def _external_flash(data, where: str) -> ExternalFlash | None:
    if data is None:
        return None
    where = f"{where}: external_flash"
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping with keys size and base (and kind, read_note)")
    check_keys(data, _EXTERNAL_KEYS, where, ("size", "base"))
    return ExternalFlash(size=parse_bytes(data["size"], f"{where} size"), base=_address(data["base"], where),
                         kind=str(data.get("kind", "QSPI NOR")), read_note=str(data.get("read_note", "")))


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
                 clock_mhz=int(data.get("clock_mhz", 0)),
                 external_flash=_external_flash(data.get("external_flash"), where))
