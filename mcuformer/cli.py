"""`mcuformer` console script: one subcommand per stage of the pipeline.

Each subcommand lives in `mcuformer/commands/<name>.py` with `add_arguments(parser)`,
`check(args)` and `run(args)`. `check` does the quick checks (paths, budgets,
settings, the output folder) without TensorFlow; only then does TensorFlow load
and `run` do the work, so a bad argument is reported at once.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from common.errors import UserError

# Subcommands that never load TensorFlow (they start faster without it).
WITHOUT_TENSORFLOW = {"build", "arduino-lib", "export-cmake", "report"}

COMMANDS = {
    "train-supernet": ("train_supernet", "train the weight-sharing ViT supernet"),
    "evolve-space": ("evolve_space", "evolve the search space (S3 / E-T error)"),
    "search": ("search", "evolutionary search under a board's SRAM/flash budget"),
    "train-teacher": ("train_teacher", "train a small CNN teacher for distillation (finetune --teacher)"),
    "finetune": ("finetune", "fine-tune (optionally QAT) a searched subnet"),
    "convert": ("convert", "int8-quantize a subnet and write the TFLM flatbuffer"),
    "verify": ("verify", "run a converted model in the Python reference / TFLM and compare"),
    "report": ("report", "per-op arena, flash, MACs and instruction estimate of a converted model"),
    "build": ("build", "build the TFLM example app for the host or a board"),
    "arduino-lib": ("arduino_lib", "write a self-contained Arduino / PlatformIO library for a converted model"),
    "export-cmake": ("export_cmake", "write a CMake package (target mcuformer::model) for a converted model"),
    "demo": ("demo", "the whole pipeline on Fashion-MNIST at tiny settings"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcuformer",
        description="Find a vision transformer that fits a microcontroller and deploy it int8 through TFLM.")
    parser.add_argument("--version", action="version", version=f"mcuformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f".commands.{module}", __package__)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip())
        mod.add_arguments(p)
        p.set_defaults(_check=mod.check, _run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2

    def command():
        args._check(args)
        if args.command not in WITHOUT_TENSORFLOW:
            from common.tf_quiet import import_tensorflow_quietly
            import_tensorflow_quietly()
        return args._run(args)

    return run_guarded(command)


def run_guarded(function) -> int:
    """Call `function()`; a UserError becomes one `error:` line and status 2
    (also for the benchmark scripts), an interrupt status 130."""
    try:
        result = function()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: progress so far is saved; run the same command again to resume", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
