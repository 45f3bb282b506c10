"""Quantize a saved static ViT to int8 and write the TFLM flatbuffer with the
project's fused custom ops, its C array, the builtin-op baseline and a report."""
from __future__ import annotations

from .arguments import add_data, add_out, check_at_least, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("subnet", metavar="SUBNET", type=path_arg,
                        help="saved static ViT (.keras) from export/finetune")
    add_out(parser)
    add_data(parser)
    parser.add_argument("--calib", type=int, default=300, help="calibration images from the training split")
    parser.add_argument("--range", dest="method", default="percentile", choices=("percentile", "mse", "minmax"),
                        help="how activation ranges are chosen from calibration")
    parser.add_argument("--percentile", type=float, default=99.9, help="percentile for --range percentile")
    parser.add_argument("--eval", type=int, default=None, metavar="N",
                        help="measure accuracy on the first N test images (default: all)")
    parser.add_argument("--qat", type=int, nargs="?", const=1, default=0, metavar="EPOCHS",
                        help="quantization-aware fine-tuning first (tensorflow-model-optimization), "
                             "EPOCHS epochs (default 1) on the training split")
    parser.add_argument("--no-baseline", action="store_true", help="skip the TFLiteConverter builtin baseline")


def check(args) -> None:
    from common.errors import UserError
    from keras_supernet.saved_format import check_loadable

    check_loadable(args.subnet)
    check_out(args.out, force=args.force)
    check_data(args.data)
    if args.qat < 0:
        raise UserError(f"--qat takes a number of epochs >= 1, got {args.qat}")
    check_at_least(args.calib, 1, "--calib")
    if args.eval is not None:
        check_at_least(args.eval, 0, "--eval")
    if not 50.0 < args.percentile <= 100.0:
        raise UserError(f"--percentile must be in (50, 100], got {args.percentile}")


def run(args) -> int:
    from converter.convert import ConvertOptions, convert

    options = ConvertOptions(calib=args.calib, method=args.method, percentile=args.percentile,
                             eval_images=args.eval, baseline=not args.no_baseline, qat_epochs=args.qat)
    report = convert(args.subnet, args.out, args.data, options, force=args.force)
    acc = report["accuracy"]
    print(f"wrote {args.out}: flash {report['flash_bytes']} B, planned arena {report['planned_arena_bytes']} B, "
          f"accuracy float {acc['float']:.4f} / int8 {acc['int8_reference']:.4f} on {acc['test_images']} images")
    return 0
