"""Brief supernet retraining between space-evolution rounds.

Round r > 0 trains a supernet of the evolved space in OUT/supernet_round{r}
for a few epochs, starting from the previous round's weights (each shared
variable's overlapping leading slice: a warm start, not an exact inheritance
when a dimension's maximum changed). The trainer checkpoints every epoch, so an
interrupted round resumes.
"""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError


def _short_name(variable) -> str:
    return variable.name.split("/", 1)[-1]


def inherit_weights(dst, src) -> int:
    """Copy each same-named variable's overlapping leading slice from `src` into `dst`; returns the count."""
    source = {_short_name(v): v for v in src.weights}
    copied = 0
    for var in dst.weights:
        other = source.get(_short_name(var))
        if other is None or len(other.shape) != len(var.shape):
            continue
        overlap = tuple(slice(0, min(a, b)) for a, b in zip(var.shape, other.shape))
        value = var.numpy()
        value[overlap] = other.numpy()[overlap]
        var.assign(value)
        copied += 1
    return copied


def supernet_for_round(base: Path, out: Path, round_index: int, space, data, epochs: int,
                       progress: bool = True) -> Path:
    """The supernet folder whose weights score `space` in round `round_index`."""
    from keras_supernet.run_folder import TrainSettings, read_run
    from keras_supernet.train import SupernetTrainer, load_supernet

    if round_index == 0:
        return Path(base)
    folder = Path(out) / f"supernet_round{round_index}"
    previous = Path(base) if round_index == 1 else Path(out) / f"supernet_round{round_index - 1}"
    settings = dict(read_run(base)["settings"], epochs=epochs)
    try:
        trainer = SupernetTrainer(space, TrainSettings(**settings), folder, data, resume=True, progress=progress)
    except TypeError as exc:
        raise UserError(f"{base}/run.json has settings this version cannot read ({exc})") from None
    if int(trainer.epoch.numpy()) == 0:
        copied = inherit_weights(trainer.supernet, load_supernet(previous))
        if copied == 0:
            raise UserError(f"no weights of {previous} fit the evolved space's supernet")
    trainer.fit()
    return folder

