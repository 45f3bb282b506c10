"""Arguments shared by several subcommands, so they read the same everywhere."""
from __future__ import annotations

from common.errors import UserError


def add_data(parser) -> None:
    parser.add_argument("--data", default="fashion_mnist",
                        help="'fashion_mnist' (Debian's dataset-fashion-mnist), an image folder "
                             "(one sub-folder per class) or a .npz with x_train/y_train/x_test/y_test")


def add_budget(parser) -> None:
    parser.add_argument("--board", help="board profile name (configs/boards) or path to a board .yaml")
    parser.add_argument("--sram", help="SRAM budget, e.g. 320KB, 320KiB or 327680 (overrides the board)")
    parser.add_argument("--flash", help="flash budget, e.g. 1MB (overrides the board)")


def add_out(parser, default: str | None = None, force: bool = True) -> None:
    parser.add_argument("--out", default=default, required=default is None, help="output folder")
    if force:
        parser.add_argument("--force", action="store_true", help="replace an existing output")


def not_yet(command: str, issue: int):
    raise UserError(f"`mcuformer {command}` is not available in this version yet (tracked in issue #{issue})")
