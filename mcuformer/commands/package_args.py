"""Arguments and checks shared by the package commands (arduino-lib, export-cmake)."""
from .arguments import add_data, check_at_least, check_data, check_out, path_arg


def add_package_arguments(parser, what: str, images: int) -> None:
    parser.add_argument("model_dir", type=path_arg, help="folder written by `mcuformer convert`")
    parser.add_argument("--out", required=True, type=path_arg, help=f"{what} folder to write")
    parser.add_argument("--name", default="MCUFormerModel", help="library name, C++ namespace and header name")
    parser.add_argument("--images", type=int, default=images, help="test images embedded in the example")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    add_data(parser)


def check_package_arguments(args) -> None:
    from deploy.model_dir import read_model_dir
    from deploy.package_sources import check_name

    read_model_dir(args.model_dir)
    check_name(args.name)
    check_out(args.out, force=args.force)
    check_at_least(args.images, 1, "--images")
    check_data(args.data)


def package_options(args) -> dict:
    return dict(name=args.name, data=args.data, num_images=args.images, force=args.force)
