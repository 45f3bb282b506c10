"""mcuformer train-supernet (issue #3)."""
from .common import not_yet


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    not_yet("train-supernet", 3)
