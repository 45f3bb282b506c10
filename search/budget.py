"""Budgets (SRAM, flash, optional MACs) and what a search space can achieve under them."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from common.errors import UserError
from common.units import format_bytes, parse_bytes

from memory_model.memory import Techniques, evaluate


@dataclass(frozen=True)
class Budget:
    sram: int                     # bytes for the TFLM arena (the app's stack and statics come on top)
    flash: int                    # bytes for model + code
    max_macs: int | None = None
    source: str = "flags"

    @classmethod
    def from_args(cls, board: str | None = None, sram=None, flash=None, max_macs=None) -> "Budget":
        """Board profile budgets, overridden by explicit --sram / --flash."""
        source = "flags"
        board_sram = board_flash = None
        if board:
            from common.boards import load_board
            b = load_board(board)
            board_sram, board_flash, source = b.sram, b.flash, f"board {b.name}"
        sram = parse_bytes(sram, "--sram") if sram is not None else board_sram
        flash = parse_bytes(flash, "--flash") if flash is not None else board_flash
        if sram is None or flash is None:
            raise UserError("give a board (--board stm32f746) or both budgets (--sram 320KB --flash 1MB)")
        if max_macs is not None and int(max_macs) <= 0:
            raise UserError(f"--max-macs must be positive, got {max_macs}")
        return cls(sram, flash, int(max_macs) if max_macs is not None else None, source)

    def admits(self, cost) -> bool:
        return (cost.sram <= self.sram and cost.flash <= self.flash
                and (self.max_macs is None or cost.macs <= self.max_macs))

    def to_dict(self) -> dict:
        return {"sram": self.sram, "flash": self.flash, "max_macs": self.max_macs, "source": self.source}

    def describe(self) -> str:
        macs = f", MACs <= {self.max_macs:,}" if self.max_macs else ""
        return f"SRAM {format_bytes(self.sram)}, flash {format_bytes(self.flash)}{macs} ({self.source})"


def uniform_subnets(space, depth: int | None = None):
    """The subnets whose blocks all share one gene set (at `depth`, default the smallest),
    each linear at the smallest rank ratio or at the extreme (full rank when allowed).

    The arena peak is a maximum over blocks and flash a sum over blocks; per linear, the
    fewest bytes are at the smallest ratio or at full rank (no intermediate buffer, fewer
    tensors). So the smallest achievable SRAM and flash of the space are among these.
    """
    d = space.dimensions
    depth = depth or min(d["depth"])
    ranks = sorted({d["rank_ratio"][0], d["rank_ratio"][-1]}, key=str)
    blocks = list(itertools.product(d["num_heads"], d["mlp_ratio"], *[ranks] * 4))
    for image in d["image_size"]:
        for patch in space.patches_for(image):
            for e in d["embed_dim"]:
                for heads, mlp, *ranks in blocks:
                    genes = {"image_size": image, "patch_size": patch, "embed_dim": e,
                             "num_heads": [heads] * depth, "mlp_ratio": [mlp] * depth}
                    genes.update({f"{lin}_rank_ratio": [r] * depth
                                  for lin, r in zip(("qkv", "proj", "fc1", "fc2"), ranks)})
                    yield space.decode(genes)


def smallest_achievable(space, techniques: Techniques = Techniques()) -> dict:
    """{'sram', 'flash', 'macs'}: each minimised separately over the space."""
    best = {"sram": None, "flash": None, "macs": None}
    for config in uniform_subnets(space):
        cost = evaluate(config, techniques)
        for key in best:
            value = getattr(cost, key)
            if best[key] is None or value < best[key]:
                best[key] = value
    return best


def check_feasible(space, budget: Budget, techniques: Techniques = Techniques()) -> None:
    """UserError when no subnet of the space can meet the budget, naming what is achievable."""
    low = smallest_achievable(space, techniques)
    short = []
    if low["sram"] > budget.sram:
        short.append(f"SRAM {format_bytes(budget.sram)} < smallest achievable {format_bytes(low['sram'])}")
    if low["flash"] > budget.flash:
        short.append(f"flash {format_bytes(budget.flash)} < smallest achievable {format_bytes(low['flash'])}")
    if budget.max_macs is not None and low["macs"] > budget.max_macs:
        short.append(f"MACs {budget.max_macs:,} < smallest achievable {low['macs']:,}")
    if short:
        raise UserError(f"no subnet of space {space.name!r} fits the budget: {'; '.join(short)}; "
                        f"raise the budget or use a smaller space")
