"""Budgets, one per board memory region (SRAM, internal flash, optional external flash), optional
MAC and instruction-estimate caps, and what a search space can achieve under them."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from common.errors import UserError
from common.units import format_bytes, parse_bytes

from memory_model.flash_split import WEIGHTS_IN, split_flash
from memory_model.memory import CODE_FLASH_BYTES, Techniques, evaluate


@dataclass(frozen=True)
class Budget:
    sram: int                     # bytes for the TFLM arena (the app's stack and statics come on top)
    flash: int                    # bytes of internal flash for code (+ the model unless it goes external)
    max_macs: int | None = None
    source: str = "flags"
    external_flash: int = 0       # bytes of external memory-mapped flash for the model (0: none)
    weights_in: str = "auto"      # memory_model.flash_split: where the model goes
    max_instructions: int | None = None   # cap on the ESTIMATED instructions per inference
    clock_mhz: int = 0            # the board's clock, to show an instruction estimate as an estimated time

    @classmethod
    def from_args(cls, board: str | None = None, sram=None, flash=None, max_macs=None, external_flash=None,
                  weights_in: str = "auto", max_instructions=None, max_latency_ms=None) -> "Budget":
        """Board profile budgets, overridden by explicit --sram / --flash / --external-flash.

        `max_latency_ms` becomes an instruction cap at the board's clock, one instruction per
        cycle: an ESTIMATE (QEMU counts instructions, not cycles), never a measured time."""
        source, clock = "flags", 0
        board_sram = board_flash = None
        board_external = 0
        if board:
            from common.boards import load_board
            b = load_board(board)
            board_sram, board_flash, source, clock = b.sram, b.flash, f"board {b.name}", b.clock_mhz
            board_external = b.external_flash.size if b.external_flash else 0
        sram = parse_bytes(sram, "--sram") if sram is not None else board_sram
        flash = parse_bytes(flash, "--flash") if flash is not None else board_flash
        external = parse_bytes(external_flash, "--external-flash") if external_flash is not None else board_external
        if sram is None or flash is None:
            raise UserError("give a board (--board stm32f746) or both budgets (--sram 320KB --flash 1MB)")
        if weights_in not in WEIGHTS_IN:
            raise UserError(f"--weights-in must be one of {', '.join(WEIGHTS_IN)}, got {weights_in!r}")
        if weights_in == "external" and not external:
            raise UserError("--weights-in external needs external flash: a board with external_flash "
                            "(e.g. --board stm32f746g-disco) or --external-flash 16MB")
        if max_macs is not None and int(max_macs) <= 0:
            raise UserError(f"--max-macs must be positive, got {max_macs}")
        cap = _instruction_cap(max_instructions, max_latency_ms, clock)
        return cls(sram, flash, int(max_macs) if max_macs is not None else None, source, external, weights_in,
                   cap, clock)

    def split(self, model_bytes: int, code_bytes: int = CODE_FLASH_BYTES):
        """memory_model.flash_split.FlashSplit of a model of `model_bytes` under this budget."""
        return split_flash(model_bytes, code_bytes, self.flash, self.external_flash, self.weights_in)

    def admits(self, cost) -> bool:
        return (cost.sram <= self.sram and self.split(cost.model_bytes, cost.flash - cost.model_bytes).fits
                and (self.max_macs is None or cost.macs <= self.max_macs)
                and (self.max_instructions is None
                     or (cost.instructions is not None and cost.instructions <= self.max_instructions)))

    def to_dict(self) -> dict:
        out = {"sram": self.sram, "flash": self.flash, "max_macs": self.max_macs, "source": self.source}
        # only when set, so the identity of searches run before these budgets existed is unchanged
        if self.external_flash:
            out["external_flash"] = self.external_flash
        if self.weights_in != "auto":
            out["weights_in"] = self.weights_in
        if self.max_instructions is not None:
            out["max_instructions_estimate"] = self.max_instructions
        return out

    def describe(self) -> str:
        parts = [f"SRAM {format_bytes(self.sram)}", f"internal flash {format_bytes(self.flash)}"]
        if self.external_flash:
            parts.append(f"external flash {format_bytes(self.external_flash)}")
        if self.weights_in != "auto":
            parts.append(f"weights in {self.weights_in} flash")
        if self.max_macs:
            parts.append(f"MACs <= {self.max_macs:,}")
        if self.max_instructions is not None:
            parts.append(f"estimated instructions <= {self.max_instructions:,}"
                         + (f" (~{latency_estimate_ms(self.max_instructions, self.clock_mhz):g} ms at "
                            f"{self.clock_mhz} MHz, 1 instruction/cycle: an estimate)" if self.clock_mhz else ""))
        return ", ".join(parts) + f" ({self.source})"


def latency_estimate_ms(instructions: int, clock_mhz: int) -> float:
    """ESTIMATED milliseconds: instructions at one per cycle at `clock_mhz` (not a measurement)."""
    return instructions / (clock_mhz * 1e3)


def describe_instruction_estimate(instructions: int, clock_mhz: int = 0) -> str:
    text = f"{instructions:,} instructions per inference (ESTIMATE from per-op figures fitted to QEMU counts"
    if clock_mhz:
        text += (f"; ~{latency_estimate_ms(instructions, clock_mhz):.1f} ms at {clock_mhz} MHz if one instruction "
                 f"ran per cycle")
    return text + "; not measured on hardware)"


def _instruction_cap(max_instructions, max_latency_ms, clock_mhz: int) -> int | None:
    if max_instructions is not None and max_latency_ms is not None:
        raise UserError("give --max-instructions or --max-latency-ms, not both")
    if max_instructions is not None:
        if int(max_instructions) <= 0:
            raise UserError(f"--max-instructions must be positive, got {max_instructions}")
        return int(max_instructions)
    if max_latency_ms is None:
        return None
    if float(max_latency_ms) <= 0:
        raise UserError(f"--max-latency-ms must be positive, got {max_latency_ms}")
    if not clock_mhz:
        raise UserError("--max-latency-ms needs a board with clock_mhz (it is converted to an instruction "
                        "estimate at one instruction per cycle); or give --max-instructions")
    return int(float(max_latency_ms) * clock_mhz * 1000)


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
    for part in space.branches:
        for image in part.dimensions["image_size"]:
            for patch in part.patches_for(image):
                for e in d["embed_dim"]:
                    for heads, mlp, *ranks in blocks:
                        genes = {"image_size": image, "patch_size": patch, "embed_dim": e,
                                 "num_heads": [heads] * depth, "mlp_ratio": [mlp] * depth}
                        genes.update({f"{lin}_rank_ratio": [r] * depth
                                      for lin, r in zip(("qkv", "proj", "fc1", "fc2"), ranks)})
                        yield part.decode(genes)


def smallest_achievable(space, techniques: Techniques = Techniques()) -> dict:
    """{'sram', 'flash', 'model_bytes', 'macs', 'instructions'}: each minimised separately over the space
    ('instructions' is the estimate; None for builtin-op graphs)."""
    best = {"sram": None, "flash": None, "model_bytes": None, "macs": None, "instructions": None}
    for config in uniform_subnets(space):
        cost = evaluate(config, techniques)
        for key in best:
            value = getattr(cost, key)
            if value is not None and (best[key] is None or value < best[key]):
                best[key] = value
    return best


def check_feasible(space, budget: Budget, techniques: Techniques = Techniques()) -> None:
    """UserError when no subnet of the space can meet the budget, naming what is achievable."""
    low = smallest_achievable(space, techniques)
    short = []
    if low["sram"] > budget.sram:
        short.append(f"SRAM {format_bytes(budget.sram)} < smallest achievable {format_bytes(low['sram'])}")
    if not budget.split(low["model_bytes"], low["flash"] - low["model_bytes"]).fits:
        external = f" + external {format_bytes(budget.external_flash)}" if budget.external_flash else ""
        short.append(f"flash {format_bytes(budget.flash)}{external} < smallest achievable "
                     f"{format_bytes(low['flash'])} (model {low['model_bytes']:,} B + code)")
    if budget.max_macs is not None and low["macs"] > budget.max_macs:
        short.append(f"MACs {budget.max_macs:,} < smallest achievable {low['macs']:,}")
    if budget.max_instructions is not None:
        if low["instructions"] is None:
            raise UserError("an instruction budget needs the custom-op graph: the estimate covers the custom ops "
                            "only (drop --no-operator-integration or the instruction cap)")
        if low["instructions"] > budget.max_instructions:
            short.append(f"estimated instructions {budget.max_instructions:,} < smallest achievable "
                         f"{low['instructions']:,}")
    if short:
        raise UserError(f"no subnet of space {space.name!r} fits the budget: {'; '.join(short)}; "
                        f"raise the budget or use a smaller space")
