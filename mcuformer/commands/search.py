"""mcuformer search (issue #4)."""
from .common import not_yet


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    not_yet("search", 4)
