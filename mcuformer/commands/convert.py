"""mcuformer convert (issue #5)."""
from .common import not_yet


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    not_yet("convert", 5)
