"""The supernet training folder and settings (no TensorFlow: commands check them first).

Folder: run.json (space + fingerprint + settings), ckpt/, history.json, logs/.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

from common import atomic
from common.errors import UserError

from .space import SearchSpace

SAMPLING = ("sandwich", "uniform")
# The CLI's step floor: a 2,000-image folder (15 batches of 128 per pass) trains about as many
# steps as a few epochs of Fashion-MNIST (README "Training recipe"). The Python API's
# default is no floor, so code that asks for N epochs of a tiny set gets exactly that.
CLI_MIN_STEPS = 2000
# `augment=None` turns augmentation on for runs that see the data at least this many times.
AUTO_AUGMENT_PASSES = 30
# Settings a resume may change: more epochs extend the run, checkpoint_steps only says when state is saved.
RESUMABLE_CHANGES = ("epochs", "checkpoint_steps")


@dataclasses.dataclass
class TrainSettings:
    """The training recipe (README "Training recipe", with the controlled runs behind it):
    AdamW with a linear warmup then cosine decay to 1%, label smoothing 0.1, augmentation
    only when the run sees the data many times, no clipping; the supernet by sandwich
    sampling at a high peak LR. The CLI adds a step floor (`CLI_MIN_STEPS`) so a small
    dataset is not undertrained."""
    epochs: int = 10
    batch_size: int = 128
    lr: float = 8e-3
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    warmup_epochs: float = 0.2
    label_smoothing: float = 0.1
    sampling: str = "sandwich"      # sandwich: largest + smallest + `num_random` random per step
    num_random: int = 1
    distill: bool = False           # sandwich only: the largest subnet teaches the others
    teacher_weight: float = 0.5     # finetune with a teacher: loss = (1 - w) CE + w CE(teacher's soft labels)
    ema_decay: float = 0.0          # finetune: validate/keep an EMA of the weights with this decay (0 = off)
    augment: bool | None = None     # random 2-px shifts and flips; None: when the run makes >= 30 passes
    erase: float = 0.0              # finetune: probability of random erasing per image (0 = off)
    clipnorm: float = 0.0           # global gradient-norm clip (0 = none)
    val_fraction: float = 0.1
    train_limit: int = 0            # 0 = the whole training split
    val_limit: int = 0
    seed: int = 0
    min_steps: int = 0              # train at least this many optimizer steps (each epoch repeats the data)
    checkpoint_steps: int = 200     # supernet: also checkpoint every this many steps within an epoch (0 = per epoch)

    def __post_init__(self):
        def bad(field, message):
            raise UserError(f"training settings: {field}: {message}")

        if self.sampling not in SAMPLING:
            bad("sampling", f"must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")
        if self.distill and self.sampling != "sandwich":
            bad("distill", "in-place distillation needs sandwich sampling (the largest subnet is the teacher)")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                bad(name, f"must be at least 1, got {getattr(self, name)}")
        if self.min_steps < 0:
            bad("min_steps", f"must be 0 (no floor) or more, got {self.min_steps}")
        if self.checkpoint_steps < 0:
            bad("checkpoint_steps", f"must be 0 (per epoch only) or more, got {self.checkpoint_steps}")
        if not 0 <= self.ema_decay < 1:
            bad("ema_decay", f"must be in [0, 1) (0 = no moving average), got {self.ema_decay}")
        if not 0 <= self.erase <= 1:
            bad("erase", f"must be a probability in [0, 1], got {self.erase}")
        if not 0 <= self.teacher_weight <= 1:
            bad("teacher_weight", f"must be in [0, 1], got {self.teacher_weight}")
        if self.lr <= 0 or not 0 <= self.label_smoothing < 1 or self.weight_decay < 0 or self.warmup_epochs < 0:
            bad("lr", "lr must be > 0, label_smoothing in [0, 1), weight_decay and warmup_epochs >= 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def passes_per_epoch(self, num_images: int) -> int:
        """Passes over the data per epoch so that `epochs` epochs make at least `min_steps` steps."""
        per_pass = max(1, num_images // self.batch_size)
        return max(1, math.ceil(self.min_steps / (self.epochs * per_pass)))

    def steps_per_epoch(self, num_images: int) -> int:
        return self.passes_per_epoch(num_images) * num_images // self.batch_size

    def augments(self, num_images: int) -> bool:
        """Augmentation helps only when the data is seen many times: on 2,000 images at the step
        floor (135 passes) it gains 2 points, on Fashion-MNIST for 4-10 passes it costs 2-5 (README)."""
        if self.augment is not None:
            return self.augment
        return self.epochs * self.passes_per_epoch(num_images) >= AUTO_AUGMENT_PASSES


def finetune_settings(**changes) -> TrainSettings:
    """Fine-tuning an exported subnet: one architecture, a short warmup, label smoothing, no
    clipping (measured best, README "Training recipe")."""
    return TrainSettings(**{"epochs": 5, "lr": 3e-3, "warmup_epochs": 0.3, "label_smoothing": 0.1,
                            "sampling": "uniform", "distill": False, **changes})


def read_run(out) -> dict:
    out = Path(out)
    if not (out / "run.json").is_file():
        raise UserError(f"{out} is not a supernet training folder (no run.json); "
                        f"pass the --out of `mcuformer train-supernet`")
    try:
        run = json.loads((out / "run.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{out / 'run.json'} is unreadable or not valid JSON; train the supernet again") from None
    if not isinstance(run, dict):
        raise UserError(f"{out / 'run.json'} is not a supernet training record; train the supernet again")
    return run


def check_same_space(run: dict, space: SearchSpace, out: Path) -> None:
    if run.get("fingerprint") != space.fingerprint():
        raise UserError(f"{out} holds a supernet of space {run.get('space', {}).get('name')!r} "
                        f"(fingerprint {run.get('fingerprint')}), not of space {space.name!r} "
                        f"({space.fingerprint()}); use the same --space or another --out")


def prepare_run_folder(out: Path, space: SearchSpace, settings: TrainSettings, resume: bool, force: bool,
                       data_name: str, check_only: bool = False) -> None:
    """Refuse a folder of another space, an existing run without resume/force, or a resume with
    changed settings; then (unless `check_only`) clear it for --force and write run.json."""
    out = Path(out)
    run_file = out / "run.json"
    current = settings.to_dict()
    if run_file.exists() and not force:
        run = read_run(out)
        check_same_space(run, space, out)
        if not resume:
            raise UserError(f"{out} already holds a supernet training run; pass --resume to continue "
                            f"it or --force to start over")
        changed = [k for k, v in run["settings"].items() if k not in RESUMABLE_CHANGES and current.get(k) != v]
        if changed:
            raise UserError(f"cannot resume {out}: setting {changed[0]!r} was "
                            f"{run['settings'][changed[0]]!r}, now {current[changed[0]]!r}")
    if check_only:
        return
    if force:
        for part in ("ckpt", "logs", "history.json"):
            path = out / part
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(run_file, {"space": space.to_dict(), "fingerprint": space.fingerprint(),
                                 "settings": current, "data": data_name})


def trained_space(out, space: SearchSpace | None = None) -> SearchSpace:
    """The space of a training folder that has a checkpoint (refusing another `space`)."""
    out = Path(out)
    run = read_run(out)
    if space is not None:
        check_same_space(run, space, out)
    if not (out / "ckpt" / "checkpoint").exists():
        raise UserError(f"{out} has no checkpoint yet; train at least one epoch (mcuformer train-supernet)")
    return SearchSpace.from_dict(run["space"])
