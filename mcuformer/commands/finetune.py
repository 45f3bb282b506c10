"""mcuformer finetune (issue #3)."""
from .common import not_yet


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    not_yet("finetune", 3)
