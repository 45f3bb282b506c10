"""Write a self-contained Arduino library for a model converted by `mcuformer
convert`: library.properties, src/ with the model array, the kernels, a
Classifier API and TFLM itself (pruned to what the model needs),
examples/<Name>Classify/*.ino. The same folder is a PlatformIO library (library.json)."""
from .package_args import add_package_arguments, check_package_arguments, package_options


def add_arguments(parser) -> None:
    add_package_arguments(parser, "library", images=3)


def check(args) -> None:
    check_package_arguments(args)


def run(args) -> int:
    from deploy.arduino_lib import write_arduino_library

    out = write_arduino_library(args.model_dir, args.out, **package_options(args))
    print(f"wrote Arduino library {out}")
    return 0
