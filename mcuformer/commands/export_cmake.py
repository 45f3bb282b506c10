"""Write a CMake source package for a model converted by `mcuformer convert`: a
static library target `mcuformer::model` (the model, the kernels, a Classifier
API and TFLM pruned to what the model needs), a toolchain-file example for
arm-none-eabi (Cortex-M7, hard float) and a host example program."""
from .package_args import add_package_arguments, check_package_arguments, package_options


def add_arguments(parser) -> None:
    add_package_arguments(parser, "package", images=10)


def check(args) -> None:
    check_package_arguments(args)


def run(args) -> int:
    from deploy.cmake_package import write_cmake_package

    out = write_cmake_package(args.model_dir, args.out, **package_options(args))
    print(f"wrote CMake package {out} (target mcuformer::model)")
    return 0
