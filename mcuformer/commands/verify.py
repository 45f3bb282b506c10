"""mcuformer verify: run a converted model in the Python reference and in TFLM.

Runs MODEL_DIR's model.tflite on N test images in the integer Python
reference, in TFLM on the host (when a TFLM tree is present) and, with --qemu,
in TFLM on the emulated Cortex-M7 (qemu-system-arm -M mps2-an500), and compares
every output byte with the reference. Prints arena_used_bytes,
planned_arena_bytes, mismatched_outputs and int8_accuracy (one JSON object
with --json). Exits 1 when any output byte differs.
"""
from __future__ import annotations

import json

from .arguments import add_data, check_at_least, check_data, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", type=path_arg,
                        help="a folder written by `mcuformer convert`")
    parser.add_argument("--images", type=int, default=100, help="test images to run (default 100)")
    add_data(parser)
    parser.add_argument("--qemu", action="store_true", help="also run TFLM under QEMU Cortex-M7 (mps2-an500)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def check(args) -> None:
    from deploy.model_dir import read_model_dir

    read_model_dir(args.model_dir)
    check_at_least(args.images, 1, "--images")
    check_data(args.data)


def run(args) -> int:
    from deploy.verify import verify

    result = verify(args.model_dir, images=args.images, data=args.data, use_qemu=args.qemu)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"reference int8 accuracy {result['int8_accuracy']:.4f} on {result['images']} images")
        for name in ("host", "qemu"):
            run_info = result.get(name)
            if run_info is None:
                continue
            if "skipped" in run_info:
                print(f"{name}: skipped ({run_info['skipped']})")
                continue
            insns = run_info.get("instructions_per_inference")
            print(f"{name}: {run_info['mismatched_outputs']} output bytes differ from the reference; "
                  f"arena_used_bytes {run_info['arena_used_bytes']} vs planned {run_info['planned_arena_bytes']} "
                  f"({run_info['arena_error_pct']:+.2f}%)" + (f"; {insns} instructions per inference" if insns else ""))
    return 1 if result["mismatched_outputs"] else 0
