"""mcuformer report: what a converted model costs, per op, before it is flashed.

For each op of MODEL_DIR's model.tflite: the arena bytes of the activations
live while it runs, its scratch, how high the arena head reaches, the
persistent (tail) bytes it allocates, its flash, MACs and an instruction
ESTIMATE; the totals (the memory model's plan, which equals TFLM's
arena_used_bytes()); with --board, the board's SRAM and flash headroom and an
estimated latency at its clock; the builtin-op baseline's table when
baseline_builtin.tflite was written. --measure builds and runs TFLM's host
runner and shows the arena it measured.
"""
from __future__ import annotations

import json

from .arguments import board_arg, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", type=path_arg, help="a folder written by `mcuformer convert`")
    parser.add_argument("--board", type=board_arg, help="board profile name (configs/boards) or a board .yaml")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print one JSON object")
    form.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--measure", action="store_true",
                        help="build and run TFLM's host runner and show its measured arena_used_bytes()")


def check(args) -> None:
    from common.boards import load_board
    from deploy.model_dir import read_model_dir

    read_model_dir(args.model_dir)
    if args.board:
        load_board(args.board)


def _measure(model_dir) -> dict:
    import numpy as np

    from common.errors import UserError
    from deploy import tflm
    from deploy.host import run_host

    root = tflm.find_tflm()
    if root is None:
        raise UserError(f"--measure needs TFLM: {tflm.missing_reason()}")
    image = np.zeros((1, *model_dir.input_shape), np.int8)
    return {"arena_used_bytes": run_host(root, model_dir.tflite, image).arena_used_bytes, "build": "host-x86_64"}


def run(args) -> int:
    from common.boards import load_board
    from deploy.model_dir import read_model_dir

    from ..model_report import build_report, layout

    model_dir = read_model_dir(args.model_dir)
    board = load_board(args.board) if args.board else None
    measured = _measure(model_dir) if args.measure else None
    report = build_report(model_dir, board, measured)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(layout(report, markdown=args.markdown))
    return 0
