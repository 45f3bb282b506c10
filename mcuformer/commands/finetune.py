"""Fine-tune one subnet of a trained supernet, starting from its inherited weights.

Writes a static tf_keras ViT (.keras) that `mcuformer convert` reads. An
interrupted run resumes from its per-epoch backup when run again.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from common.errors import UserError

from .arguments import add_augment_and_step_floor, add_data, check_at_least, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("--supernet", required=True, type=path_arg,
                        help="supernet training folder (mcuformer train-supernet --out)")
    parser.add_argument("--arch", required=True, type=path_arg,
                        help="subnet architecture (.json/.yaml ArchConfig, e.g. from search)")
    parser.add_argument("--out", required=True, type=path_arg, help="output model file (.keras)")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    add_data(parser)
    from keras_supernet.run_folder import finetune_settings   # no TensorFlow: the defaults live there

    d = finetune_settings()
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    parser.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    parser.add_argument("--teacher", type=path_arg,
                        help="distil from this model's soft predictions (.keras, e.g. mcuformer train-teacher)")
    parser.add_argument("--teacher-weight", type=float, default=d.teacher_weight,
                        help="share of the teacher's term in the loss (with --teacher)")
    parser.add_argument("--ema", type=float, default=d.ema_decay, metavar="DECAY",
                        help="validate and keep an exponential moving average of the weights with this decay, "
                             "e.g. 0.999 (0 = off)")
    parser.add_argument("--erase", type=float, default=d.erase, metavar="P",
                        help="random erasing: with probability P, replace a random rectangle of each training "
                             "image by noise (0 = off)")
    add_augment_and_step_floor(parser, d)
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (0 = all)")
    parser.add_argument("--val-limit", type=int, default=0,
                        help="use only the first N validation images (0 = all); the best of them is kept")
    parser.add_argument("--seed", type=int, default=0)


def load_arch(path):
    from common.configfile import load_mapping
    from keras_supernet.arch import ArchConfig

    data = load_mapping(path, "architecture")
    return ArchConfig.from_dict(data["arch"] if isinstance(data.get("arch"), dict) else data)


def save_keras_atomic(model, out: Path) -> None:
    """Keras picks the format from the suffix, so save as NAME.keras in a temp folder, then rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save(tmp / out.name)
        os.replace(tmp / out.name, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_teacher(path):
    from converter.keras_load import load_model

    return load_model(path)


def _arch_and_settings(args):
    from keras_supernet.run_folder import finetune_settings, trained_space

    arch = load_arch(args.arch)
    trained_space(args.supernet).check(arch)
    settings = finetune_settings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                                 label_smoothing=args.label_smoothing, augment=args.augment, seed=args.seed,
                                 min_steps=args.min_steps, teacher_weight=args.teacher_weight,
                                 ema_decay=args.ema, erase=args.erase)
    return arch, settings


def check(args) -> None:
    out = Path(args.out)
    if out.suffix != ".keras":
        raise UserError(f"--out {out}: the model file must end in .keras")
    check_out(out, force=args.force, folder=False)
    _arch_and_settings(args)
    if args.teacher and not Path(args.teacher).exists():
        raise UserError(f"--teacher {args.teacher}: no such model; train one with `mcuformer train-teacher`")
    check_at_least(args.train_limit, 0, "--train-limit")
    check_at_least(args.val_limit, 0, "--val-limit")
    check_data(args.data)


def run(args) -> int:
    from common import datasets

    out = Path(args.out)
    arch, settings = _arch_and_settings(args)
    data = datasets.load(args.data)
    if data.num_classes != arch.num_classes:
        raise UserError(f"dataset {data.name!r} has {data.num_classes} classes but the subnet has "
                        f"num_classes {arch.num_classes}")

    from keras_supernet.finetune import clear_backup, evaluate_model, finetune_subnet
    from keras_supernet.batches import split_data
    from keras_supernet.supernet import export_subnet
    from keras_supernet.train import load_supernet, quiet_tensorflow

    quiet_tensorflow()
    supernet = load_supernet(args.supernet)
    x_tr, y_tr, x_val, y_val = split_data(data, arch.image_size, arch.channels, train_limit=args.train_limit,
                                          val_limit=args.val_limit)
    model = export_subnet(supernet, arch)
    teacher = load_teacher(args.teacher) if args.teacher else None
    inherited = evaluate_model(model, x_val, y_val)
    backup = out.with_name(f".{out.name}.backup")
    meta = {"supernet": str(Path(args.supernet).resolve()), "arch": arch.to_dict(), "settings": settings.to_dict(),
            "teacher": args.teacher}
    meta_file = backup / "meta.json"
    if backup.exists() and (not meta_file.exists() or json.loads(meta_file.read_text()) != meta):
        clear_backup(backup)          # a backup of another run: start over
    backup.mkdir(parents=True, exist_ok=True)
    meta_file.write_text(json.dumps(meta))
    history = finetune_subnet(model, x_tr, y_tr, x_val, y_val, settings, backup_dir=backup, teacher=teacher)
    save_keras_atomic(model, out)
    clear_backup(backup)
    best, best_epoch = evaluate_model(model, x_val, y_val), (history[-1]["best_epoch"] if history else 0)
    kept = "the inherited weights" if best_epoch == 0 else f"epoch {best_epoch}"
    print(f"{out}: {arch.describe()}; params {arch.params()}, MACs {arch.macs()}; val acc inherited "
          f"{inherited:.4f} -> fine-tuned {best:.4f} (best on validation: {kept})")
    return 0
