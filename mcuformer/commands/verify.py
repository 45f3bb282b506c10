"""mcuformer verify (issue #7)."""
from .common import not_yet


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    not_yet("verify", 7)
