"""mcuformer build: the TFLM example app (examples/image_classification) for a board.

Checks the model's arena (report.json required_arena_bytes, the smallest arena
TFLM's AllocateTensors succeeds with, rounded up to 16) against the board's SRAM
and the model against its flash, then builds through the TFLM Makefile (cortex_m_generic,
CMSIS-NN) the app for the board and its QEMU twin (mps2-an500 for Cortex-M7),
reports .text/.data/.bss, and with --qemu runs the twin on the embedded test
images (instructions per inference from QEMU). On a board with external flash
(stm32f746g-disco, stm32h743i-eval) the model goes there when it does not fit
internal flash, or with --weights-in external: internal and external bytes are
reported separately. Writes OUT/build.json.
"""
from __future__ import annotations

import json

from .arguments import add_data, board_arg, check_at_least, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", type=path_arg, help="a folder written by `mcuformer convert`")
    parser.add_argument("--board", default="stm32f746", type=board_arg,
                        help="board profile (configs/boards) or a board .yaml (default stm32f746)")
    parser.add_argument("--out", type=path_arg, help="output folder (default MODEL_DIR/build/BOARD)")
    parser.add_argument("--images", type=int, default=4, help="test images embedded in the app (default 4)")
    add_data(parser)
    parser.add_argument("--weights-in", choices=("auto", "internal", "external"), default="auto",
                        help="where the model goes: auto (internal flash when code + model fit, else the board's "
                             "external flash), internal, or external")
    parser.add_argument("--qemu", action="store_true", help="run the QEMU twin and count instructions")
    parser.add_argument("--host", action="store_true", help="also build the app for the host and run the model there")
    parser.add_argument("--json", action="store_true", help="print build.json instead of a summary")


def check(args) -> None:
    from pathlib import Path

    from common.boards import load_board
    from deploy.model_dir import read_model_dir

    board = load_board(args.board)
    read_model_dir(args.model_dir)
    check_out(args.out or Path(args.model_dir) / "build" / board.name)
    check_at_least(args.images, 1, "--images")
    check_data(args.data)


def run(args) -> int:
    from common.boards import load_board
    from deploy.board_build import build_for_board

    board = load_board(args.board)
    result = build_for_board(args.model_dir, board, out=args.out, images=args.images, data=args.data,
                             run_host=args.host, run_qemu=args.qemu, weights_in=args.weights_in)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    sec = result["sections"]
    print(f"{result['elf']}: .text {sec['text']} B, .data {sec['data']} B, .bss {sec['bss']} B "
          f"(flash {sec['flash']} of {board.flash} B, RAM {sec['ram']} of {board.sram} B; "
          f"arena {result['arena_bytes']} B)")
    if "external_flash" in sec:
        ext = board.external_flash
        where = (f"at {sec['external_address']:#010x}" if sec["external_flash"] else "none: the model is internal")
        print(f"  internal flash {sec['internal_flash']} of {board.flash} B; external flash ({ext.kind}) "
              f"{sec['external_flash']} of {ext.size} B, section .mcuformer_ext_weights {where}")
    for name in ("qemu", "host"):
        run_info = result.get(name)
        if run_info and "skipped" not in run_info:
            insns = run_info.get("instructions_per_inference")
            per = f", {insns[0]} instructions per inference" if insns else ""
            print(f"{name}: accuracy {run_info['accuracy']:.3f} on {result['images']} images, "
                  f"arena_used_bytes {run_info['arena_used_bytes']}{per}")
        elif run_info:
            print(f"{name}: skipped ({run_info['skipped']})")
    if "qemu_equals_host" in result:
        print(f"QEMU outputs == host outputs: {result['qemu_equals_host']}")
    return 0
