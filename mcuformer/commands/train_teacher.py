"""Train a CNN teacher (keras_supernet/teacher.py: `cnn2`, the benchmark's CNN reference,
or the stronger `cnn4`) that `finetune --teacher` distils from: the subnet's recipe, step
floor and best-validation rule; the test set is never used. An interrupted run resumes from its per-epoch backup."""
from __future__ import annotations

from pathlib import Path

from .arguments import add_augment_and_step_floor, add_data, check_at_least, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    from keras_supernet.run_folder import finetune_settings

    d = finetune_settings(epochs=20)
    parser.add_argument("--out", required=True, type=path_arg, help="output model file (.keras)")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    add_data(parser)
    parser.add_argument("--arch", default="cnn4",
                        help="cnn4 (4 conv layers with batch norm, the stronger teacher) or cnn2 (the 2-conv "
                             "CNN reference)")
    parser.add_argument("--image-size", type=int, default=0, help="input size (0 = the data's)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--lr", type=float, default=d.lr)
    add_augment_and_step_floor(parser, d)
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (0 = all)")
    parser.add_argument("--val-limit", type=int, default=0, help="use only the first N validation images (0 = all)")
    parser.add_argument("--seed", type=int, default=0)


def check(args) -> None:
    from common.errors import UserError

    if Path(args.out).suffix != ".keras":
        raise UserError(f"--out {args.out}: the model file must end in .keras")
    check_out(Path(args.out), force=args.force, folder=False)
    if args.arch not in ("cnn2", "cnn4"):      # keras_supernet.teacher.TEACHER_ARCHS, without importing TF
        raise UserError(f"--arch {args.arch}: choose cnn4 or cnn2")
    for name in ("epochs", "image_size", "train_limit", "val_limit"):
        check_at_least(getattr(args, name), 1 if name == "epochs" else 0, "--" + name.replace("_", "-"))
    check_data(args.data)


def run(args) -> int:
    from common import datasets
    from keras_supernet.batches import split_data
    from keras_supernet.finetune import clear_backup, finetune_subnet
    from keras_supernet.run_folder import finetune_settings
    from keras_supernet.teacher import build_teacher
    from keras_supernet.train import quiet_tensorflow

    from .finetune import save_keras_atomic

    quiet_tensorflow()
    out = Path(args.out)
    data = datasets.load(args.data)
    height, _, channels = data.image_shape
    size = args.image_size or height
    settings = finetune_settings(epochs=args.epochs, lr=args.lr, augment=args.augment, min_steps=args.min_steps,
                                 seed=args.seed)
    x_tr, y_tr, x_val, y_val = split_data(data, size, channels, train_limit=args.train_limit,
                                          val_limit=args.val_limit)
    model = build_teacher(args.arch, size, channels, data.num_classes, seed=args.seed)
    backup = out.with_name(f".{out.name}.backup")
    history = finetune_subnet(model, x_tr, y_tr, x_val, y_val, settings, backup_dir=backup)
    save_keras_atomic(model, out)
    clear_backup(backup)
    print(f"{out}: {args.arch} teacher, {model.count_params():,} parameters; best val acc "
          f"{history[-1]['best_val_acc'] if history else float('nan'):.4f} (epoch {history[-1]['best_epoch']})")
    return 0
