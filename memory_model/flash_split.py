"""Which flash region holds what: code in internal flash, the model in internal or external flash.

The deployed model is one array, the `.tflite` flatbuffer: TFLM reads every
weight in place from it, so the model moves as a whole (the build puts the
array in the section `.mcuformer_ext_weights`, which the board's linker script
maps to its memory-mapped QSPI/OSPI flash). Code (TFLM, kernels, app:
`CODE_FLASH_BYTES`) always stays in internal flash. This one function decides
the split for search budgets, `mcuformer build` and the reports.
"""
from __future__ import annotations

from dataclasses import dataclass

WEIGHTS_IN = ("auto", "internal", "external")
EXTERNAL_SECTION = ".mcuformer_ext_weights"


@dataclass(frozen=True)
class FlashSplit:
    internal_bytes: int          # code (+ the model when it stays internal)
    external_bytes: int          # the model when it goes to external flash, else 0
    weights_in: str              # "internal" or "external": where the model array is placed
    internal_capacity: int
    external_capacity: int       # 0: the board has no external flash

    @property
    def fits(self) -> bool:
        return self.internal_bytes <= self.internal_capacity and self.external_bytes <= self.external_capacity

    def to_dict(self) -> dict:
        return {"weights_in": self.weights_in, "internal_flash_bytes": self.internal_bytes,
                "external_flash_bytes": self.external_bytes, "internal_flash_capacity": self.internal_capacity,
                "external_flash_capacity": self.external_capacity, "fits": self.fits}

    def describe(self) -> str:
        text = f"internal flash {self.internal_bytes:,d} of {self.internal_capacity:,d} B"
        if self.external_capacity:
            text += f", external flash {self.external_bytes:,d} of {self.external_capacity:,d} B"
        return text + f" (model {'in external flash' if self.weights_in == 'external' else 'internal'})"


def split_flash(model_bytes: int, code_bytes: int, internal_capacity: int, external_capacity: int = 0,
                weights_in: str = "auto") -> FlashSplit:
    """Place the model: "internal", "external", or "auto" (internal when code + model fit there,
    else external when the board has external flash). The split may not fit; see `.fits`."""
    if weights_in not in WEIGHTS_IN:
        raise ValueError(f"weights_in must be one of {WEIGHTS_IN}, got {weights_in!r}")
    if weights_in == "external" and not external_capacity:
        raise ValueError("weights_in='external' needs a board with external flash")
    external = weights_in == "external" or (
        weights_in == "auto" and external_capacity > 0 and code_bytes + model_bytes > internal_capacity)
    return FlashSplit(internal_bytes=code_bytes + (0 if external else model_bytes),
                      external_bytes=model_bytes if external else 0,
                      weights_in="external" if external else "internal",
                      internal_capacity=internal_capacity, external_capacity=external_capacity)
