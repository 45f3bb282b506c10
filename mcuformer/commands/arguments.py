"""Arguments shared by several subcommands, so they read the same everywhere.

Path arguments are made absolute when parsed (`path_arg`): builds run make
inside the TFLM tree, so a path relative to the user's folder would name
another file there. The `check_*` helpers are the quick checks every command
runs before TensorFlow loads (see `mcuformer.cli`).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from common.errors import UserError

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def path_arg(text: str) -> str:
    """argparse type of a path: absolute, against the folder the command was started in."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return os.path.abspath(os.path.expanduser(text))


def data_arg(text: str) -> str:
    """--data: a data set's name stays a name, anything else is a path."""
    from common.datasets import NAMED_SOURCES

    return text if text in NAMED_SOURCES else path_arg(text)


def board_arg(text: str) -> str:
    """--board: a profile name stays a name, a board file is a path."""
    return path_arg(text) if text.endswith(CONFIG_SUFFIXES) or os.sep in text else text


def add_data(parser) -> None:
    parser.add_argument("--data", default="fashion_mnist", type=data_arg,
                        help="'fashion_mnist' (Debian's dataset-fashion-mnist), an image folder "
                             "(one sub-folder per class) or a .npz with x_train/y_train/x_test/y_test")


def add_budget(parser) -> None:
    parser.add_argument("--board", type=board_arg, help="board profile name (configs/boards) or path to a board .yaml")
    parser.add_argument("--sram", help="SRAM budget, e.g. 320KB, 320KiB or 327680 (overrides the board)")
    parser.add_argument("--flash", help="flash budget, e.g. 1MB (overrides the board)")


def add_region_and_latency_budget(parser) -> None:
    """External flash and where the weights go, and the instruction-estimate cap (search)."""
    from memory_model.flash_split import WEIGHTS_IN

    parser.add_argument("--external-flash", help="external memory-mapped flash for the model, e.g. 16MB "
                                                 "(overrides the board's external_flash)")
    parser.add_argument("--weights-in", choices=WEIGHTS_IN, default="auto",
                        help="where the model goes: internal flash, external flash, or auto (internal when "
                             "code + model fit there, else external)")
    latency = parser.add_mutually_exclusive_group()
    latency.add_argument("--max-instructions", type=int,
                         help="cap on the ESTIMATED instructions per inference (memory_model/op_instructions.py)")
    latency.add_argument("--max-latency-ms", type=float,
                         help="the same cap as an ESTIMATED time: ms x the board's clock_mhz x 1000 instructions "
                              "(assumes one instruction per cycle; not a measured latency)")


def add_out(parser, default: str | None = None, force: bool = True, what: str = "output folder") -> None:
    parser.add_argument("--out", default=default, required=default is None, type=path_arg, help=what)
    if force:
        parser.add_argument("--force", action="store_true", help="replace an existing output")


def check_input(path, what: str, folder: bool = False) -> Path:
    """An input file (or folder) that exists and can be read; else one line naming it."""
    path = Path(path)
    kind = "folder" if folder else "file"
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if path.is_dir() != folder:
        raise UserError(f"{what} {path} is not a {kind}")
    if not os.access(path, os.R_OK | (os.X_OK if folder else 0)):
        raise UserError(f"{what} {path} cannot be read (permissions); make it readable")
    return path


def check_out(path, force: bool | None = None, folder: bool = True) -> Path:
    """An output that can be written: its nearest existing folder is writable, an existing
    output is of the right kind, and (`force` False) refused without --force."""
    path = Path(path)
    if path.exists():
        if force is False:
            raise UserError(f"output {path} already exists; pass --force to replace it")
        if folder and not path.is_dir():
            raise UserError(f"output {path} exists and is not a folder; pass another --out")
        if not folder and path.is_dir():
            raise UserError(f"output {path} is a folder; pass a file name")
    replaced_file = not folder and path.is_file()         # --force over an existing file: check its folder
    existing = next(p for p in (path.parents if replaced_file else (path, *path.parents)) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot write {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: folder {existing} is not writable")
    return path


def check_data(source: str) -> None:
    from common import datasets

    datasets.check_source(source)


def check_at_least(value, minimum, flag: str) -> None:
    if value < minimum:
        raise UserError(f"{flag} must be at least {minimum}, got {value}")


def add_augment_and_step_floor(parser, defaults) -> None:
    """--augment and --min-steps, shared by train-supernet and finetune (`defaults`: their settings)."""
    from keras_supernet.run_folder import CLI_MIN_STEPS   # no TensorFlow: the defaults live there

    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=defaults.augment,
                        help="random 2-px shifts (pad + crop) and horizontal flips (default: only when the "
                             "run makes at least 30 passes over the data, i.e. a small dataset at --min-steps)")
    parser.add_argument("--min-steps", type=int, default=CLI_MIN_STEPS,
                        help="train at least this many optimizer steps: on a small dataset each epoch "
                             "repeats the data (0 = exactly --epochs passes)")
