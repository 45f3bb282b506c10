"""Train the weight-sharing ViT supernet of a search space (configs/spaces/*.yaml).

A checkpoint is written every epoch; run the same command with --resume to
continue after an interruption. TensorBoard logs go to OUT/logs.
"""
from __future__ import annotations


from common.errors import UserError

from .arguments import add_augment_and_step_floor, add_data, add_out, check_at_least, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    from keras_supernet.run_folder import TrainSettings   # no TensorFlow: the defaults live there

    d = TrainSettings()
    parser.add_argument("--space", required=True, type=path_arg, help="search space file, e.g. configs/spaces/fmnist.yaml")
    add_out(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_data(parser)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW, cosine, warmup)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    parser.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    parser.add_argument("--sampling", choices=("sandwich", "uniform"), default=d.sampling,
                        help="sandwich: largest + smallest + --num-random random subnets per step")
    parser.add_argument("--num-random", type=int, default=d.num_random)
    parser.add_argument("--distill", action="store_true",
                        help="sandwich: in-place distillation from the largest subnet (slows short runs)")
    add_augment_and_step_floor(parser, d)
    parser.add_argument("--clipnorm", type=float, default=d.clipnorm, help="global gradient-norm clip (0 = none)")
    parser.add_argument("--checkpoint-steps", type=int, default=d.checkpoint_steps,
                        help="also checkpoint every N steps inside an epoch, so --resume after a kill loses "
                             "at most N steps (0 = per epoch only)")
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (0 = all)")
    parser.add_argument("--val-limit", type=int, default=0, help="use only the first N validation images (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", choices=("auto", "one-device", "mirrored"), default="auto",
                        help="tf.distribute strategy (auto: mirrored over several GPUs, else the default)")


def make_strategy(name: str):
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


def _space_and_settings(args):
    from keras_supernet.run_folder import TrainSettings
    from keras_supernet.space import SearchSpace

    space = SearchSpace.load(args.space)
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, sampling=args.sampling,
        num_random=args.num_random, distill=args.distill, augment=args.augment, clipnorm=args.clipnorm,
        train_limit=args.train_limit, val_limit=args.val_limit, seed=args.seed, min_steps=args.min_steps,
        checkpoint_steps=args.checkpoint_steps)
    return space, settings


def check(args) -> None:
    from keras_supernet.run_folder import prepare_run_folder

    space, settings = _space_and_settings(args)
    for flag in ("train_limit", "val_limit", "num_random"):
        check_at_least(getattr(args, flag), 0, "--" + flag.replace("_", "-"))
    check_out(args.out)
    check_data(args.data)
    prepare_run_folder(args.out, space, settings, args.resume, args.force, "", check_only=True)


def run(args) -> int:
    from common import datasets

    space, settings = _space_and_settings(args)
    data = datasets.load(args.data)
    if data.num_classes != space.num_classes:
        raise UserError(f"dataset {data.name!r} has {data.num_classes} classes but space {space.name!r} "
                        f"has num_classes {space.num_classes}")
    from keras_supernet.train import SupernetTrainer, quiet_tensorflow

    quiet_tensorflow()
    trainer = SupernetTrainer(space, settings, args.out, data, strategy=make_strategy(args.strategy),
                              resume=args.resume, force=args.force)
    history = trainer.fit()
    if history:
        last = history[-1]
        print(f"supernet {space.name}: {last['epoch']} epochs in {args.out}; val acc largest "
              f"{last['val_acc_largest']:.4f}, smallest {last['val_acc_smallest']:.4f}")
    return 0
