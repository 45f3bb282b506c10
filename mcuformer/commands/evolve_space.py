"""mcuformer evolve-space (issue #4)."""
from .common import not_yet


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    not_yet("evolve-space", 4)
