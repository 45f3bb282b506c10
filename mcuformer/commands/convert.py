"""Quantize a saved static ViT to int8 and write the TFLM flatbuffer with the
project's fused custom ops, its C array, the builtin-op baseline and a report."""
from __future__ import annotations

from .arguments import add_data, add_out, check_at_least, check_data, check_input, check_out, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("subnet", metavar="SUBNET", type=path_arg,
                        help="saved static ViT (.keras) from export/finetune")
    add_out(parser)
    add_data(parser)
    parser.add_argument("--calib", type=int, default=300, help="calibration images from the training split")
    parser.add_argument("--range", dest="method", default="percentile",
                        choices=("percentile", "mse", "minmax", "auto"),
                        help="how activation ranges are chosen from calibration; auto: the method whose int8 "
                             "model scores best on the validation split (--val-limit images)")
    parser.add_argument("--val-limit", type=int, default=2000, metavar="N",
                        help="validation images --range auto scores each method on (0: all; default 2000)")
    parser.add_argument("--percentile", type=float, default=99.9, help="percentile for --range percentile")
    parser.add_argument("--eval", type=int, default=None, metavar="N",
                        help="measure accuracy on the first N test images (default: all)")
    parser.add_argument("--qat", type=int, nargs="?", const=1, default=0, metavar="EPOCHS",
                        help="quantization-aware fine-tuning first (tensorflow-model-optimization), "
                             "EPOCHS epochs (default 1) on the training split")
    parser.add_argument("--no-baseline", action="store_true", help="skip the TFLiteConverter builtin baseline")
    parser.add_argument("--custom-objects", type=path_arg, metavar="FILE.py",
                        help="a stock tf_keras ViT's Python file defining its custom layers (class token, "
                             "position embedding); imported before loading")
    parser.add_argument("--rank", type=int, default=0, metavar="R",
                        help="factorise each block linear to rank R by truncated SVD (where that saves weights)")
    parser.add_argument("--rank-ratio", type=float, default=0.0, metavar="F",
                        help="factorise each block linear keeping about F (0 < F < 1) of its weights")


def check(args) -> None:
    from common.errors import UserError
    from keras_supernet.saved_format import check_loadable

    check_loadable(args.subnet)
    check_out(args.out, force=args.force)
    check_data(args.data)
    if args.qat < 0:
        raise UserError(f"--qat takes a number of epochs >= 1, got {args.qat}")
    check_at_least(args.calib, 1, "--calib")
    check_at_least(args.val_limit, 0, "--val-limit")
    if args.eval is not None:
        check_at_least(args.eval, 0, "--eval")
    if not 50.0 < args.percentile <= 100.0:
        raise UserError(f"--percentile must be in (50, 100], got {args.percentile}")
    _check_byo(args)


def _check_byo(args) -> None:
    from common.errors import UserError

    if args.custom_objects is not None and not args.custom_objects.endswith(".py"):
        raise UserError(f"--custom-objects takes a Python file (.py), got {args.custom_objects}")
    if args.custom_objects is not None:
        check_input(args.custom_objects, "--custom-objects file")
    if args.rank < 0 or not 0.0 <= args.rank_ratio < 1.0 or (args.rank and args.rank_ratio):
        raise UserError(f"pass --rank R (R >= 1) or --rank-ratio F (0 < F < 1), not both; "
                        f"got --rank {args.rank} --rank-ratio {args.rank_ratio}")


def run(args) -> int:
    from converter.convert import ConvertOptions, convert
    from converter.range_choice import method_name

    options = ConvertOptions(calib=args.calib, method=args.method, percentile=args.percentile,
                             val_images=args.val_limit, eval_images=args.eval, baseline=not args.no_baseline,
                             qat_epochs=args.qat, custom_objects=args.custom_objects, rank=args.rank,
                             rank_ratio=args.rank_ratio)
    report = convert(args.subnet, args.out, args.data, options, force=args.force)
    acc = report["accuracy"]
    choice = report["quantization"].get("range_choice")
    if choice:
        scores = ", ".join(f"{method_name(s)} {s['val_int8_top1']:.4f}" for s in choice["scores"])
        print(f"--range auto: int8 top-1 on {choice['validation_images']} validation images: {scores}; "
              f"chose {method_name(choice)}")
    print(f"wrote {args.out}: flash {report['flash_bytes']} B, arena {report['required_arena_bytes']} B "
          f"(Cortex-M, what AllocateTensors needs; {report['planned_arena_bytes']} B in use after it), "
          f"accuracy float {acc['float']:.4f} / int8 {acc['int8_reference']:.4f} on {acc['test_images']} images")
    if "import" in report:
        imp = report["import"]
        print(f"imported a stock tf_keras ViT: activations {', '.join(sorted(set(imp['activations'])))}, "
              f"{imp['pooling']} pooling; its own float accuracy {imp['source_float_accuracy']:.4f}, "
              f"max |logit difference| after mapping {imp['max_abs_logit_difference']:.2g}")
    if "low_rank" in report:
        low = report["low_rank"]
        print(f"low rank: predicted model flash {low['flash_bytes_full_rank_predicted']} -> "
              f"{low['flash_bytes_predicted']} B, float accuracy {low['float_accuracy_full_rank']:.4f} -> "
              f"{low['float_accuracy']:.4f}")
    return 0
