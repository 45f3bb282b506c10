"""Write an Arduino-style library (library.properties, src/ with the kernels,
the model array and a Classifier API, examples/<Name>Classify/*.ino) for a
model converted by `mcuformer convert`. Use it next to TFLM's Arduino library."""
from .arguments import add_data, check_at_least, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", type=path_arg, help="folder written by `mcuformer convert`")
    parser.add_argument("--out", required=True, type=path_arg, help="library folder to write")
    parser.add_argument("--name", default="MCUFormerModel", help="library and C++ namespace name")
    parser.add_argument("--images", type=int, default=3, help="test images embedded in the example")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    add_data(parser)


def check(args) -> None:
    from deploy.model_dir import read_model_dir

    read_model_dir(args.model_dir)
    check_out(args.out, force=args.force)
    check_at_least(args.images, 1, "--images")
    check_data(args.data)


def run(args) -> int:
    from deploy.arduino_lib import write_arduino_library

    out = write_arduino_library(args.model_dir, args.out, name=args.name, data=args.data,
                                num_images=args.images, force=args.force)
    print(f"wrote Arduino library {out}")
    return 0
