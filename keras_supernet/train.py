"""Supernet training: sandwich or uniform subnet sampling, in-place distillation,
AdamW + cosine with warmup, label smoothing, light augmentation; a checkpoint
per epoch and every `checkpoint_steps` steps within one, that resumes exactly
(weights, optimizer state, step counter, the position in the epoch and the
subnet sampler's state; the data order, augmentation and subnet draws of an
epoch derive from (seed, epoch), so a resume skips the batches already trained).

Run folder:  run.json (space + settings; a run of another space is refused),
ckpt/ (tf.train checkpoints per epoch), ckpt/steps/ (the latest mid-epoch one),
history.json (per-epoch metrics), logs/ (TensorBoard).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow.core.framework import summary_pb2
from tqdm import tqdm

from common import atomic, datasets
from common.errors import UserError

from . import batches
from .arch import ArchConfig
from .run_folder import TrainSettings, prepare_run_folder, read_run, trained_space
from .space import SearchSpace
from .supernet import Supernet, resize_images

NO_DECAY = ["bias", "norm", "pos", "cls"]


# ---- shared by supernet training and subnet fine-tuning --------------------------------

def make_optimizer(settings: TrainSettings, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = max(1, settings.epochs * steps_per_epoch)
    warmup = min(int(settings.warmup_epochs * steps_per_epoch), total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=settings.lr * settings.min_lr_ratio if warmup else settings.lr,
        decay_steps=total - warmup, alpha=settings.min_lr_ratio,
        warmup_target=settings.lr if warmup else None, warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=settings.weight_decay,
                                       global_clipnorm=settings.clipnorm or None, jit_compile=False)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


def step_floor_note(settings: TrainSettings, num_images: int) -> str:
    passes = settings.passes_per_epoch(num_images)
    return (f"step floor {settings.min_steps}: each epoch is {passes} passes over the {num_images} training "
            f"images ({settings.steps_per_epoch(num_images)} steps), augmentation "
            f"{'on' if settings.augments(num_images) else 'off'}")


def smoothed_loss(labels, logits, num_classes: int, smoothing: float):
    """Per-example cross-entropy with label smoothing."""
    targets = tf.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
    return tf.nn.softmax_cross_entropy_with_logits(targets, logits)


def distill_loss(teacher_logits, logits):
    """Per-example cross-entropy to the teacher's (stopped) soft predictions."""
    return tf.nn.softmax_cross_entropy_with_logits(tf.nn.softmax(tf.stop_gradient(teacher_logits)), logits)


def evaluate_subnet(supernet: Supernet, config: ArchConfig, x: np.ndarray, y: np.ndarray,
                    batch_size: int = 1000) -> float:
    """Top-1 accuracy of `config` with inherited weights on uint8 images `x`."""
    supernet.set_sample_config(config)
    forward, masks = supernet.compiled_forward(config), supernet.masks(config)
    return batches.top1(lambda images: forward(images, masks), x, y, config.image_size, config.channels, batch_size)


def quiet_tensorflow() -> None:
    """Silence TF's warnings (retracing, cond gradients) during long runs."""
    tf.get_logger().setLevel("ERROR")


def log_scalar(tag: str, value: float) -> None:
    """A TensorBoard scalar via TF's core summary op (the `tensorboard` package need not be installed)."""
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
                                           data_class=summary_pb2.DATA_CLASS_SCALAR)
    tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=metadata)


# ---- a trained supernet ------------------------------------------------------------------

def load_supernet(out, space: SearchSpace | None = None) -> Supernet:
    """The supernet of a training folder with its latest checkpoint's weights."""
    stored = trained_space(out, space)
    supernet = Supernet(stored, seed=read_run(out)["settings"]["seed"])
    _restore(tf.train.Checkpoint(model=supernet), tf.train.latest_checkpoint(str(Path(out) / "ckpt"))).expect_partial()
    return supernet


def _restore(checkpoint: tf.train.Checkpoint, path: str):
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} does not match this supernet ({first}); "
                        f"it was written for another space or version") from None
    return status


# ---- the trainer -------------------------------------------------------------------------------

class SupernetTrainer:
    def __init__(self, space: SearchSpace, settings: TrainSettings, out, data: datasets.Dataset,
                 strategy: tf.distribute.Strategy | None = None, resume: bool = False, force: bool = False,
                 progress: bool = True):
        self.space, self.settings, self.out = space, settings, Path(out)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.progress = progress
        prepare_run_folder(self.out, space, settings, resume, force, data.name)
        size = space.max_dims()["image_size"]
        self.x_train, self.y_train, self.x_val, self.y_val = batches.split_data(
            data, size, space.channels, settings.val_fraction, settings.train_limit, settings.val_limit)
        if data.num_classes != space.num_classes:
            raise UserError(f"dataset {data.name!r} has {data.num_classes} classes but space {space.name!r} "
                            f"has num_classes {space.num_classes}")
        self.passes = settings.passes_per_epoch(len(self.x_train))
        self.steps_per_epoch = settings.steps_per_epoch(len(self.x_train))
        if progress and self.passes > 1:
            tqdm.write(step_floor_note(settings, len(self.x_train)))
        with self.strategy.scope():
            self.supernet = Supernet(space, seed=settings.seed)
            self.optimizer = make_optimizer(settings, self.steps_per_epoch)
            self.optimizer.build(self.supernet.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=self.supernet, optimizer=self.optimizer, epoch=self.epoch)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.out / "ckpt"), max_to_keep=2)
        # The unfinished epoch: steps trained, the subnet sampler's state and the metric sums so far.
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False, name="position")
        self.sampler_state = tf.Variable("", dtype=tf.string, trainable=False, name="sampler_state")
        self.sums = tf.Variable([0.0, 0.0, 0.0], dtype=tf.float64, trainable=False, name="sums")
        self.step_checkpoint = tf.train.Checkpoint(model=self.supernet, optimizer=self.optimizer, epoch=self.epoch,
                                                   position=self.position, sampler_state=self.sampler_state,
                                                   sums=self.sums)
        self.step_manager = tf.train.CheckpointManager(self.step_checkpoint, str(self.out / "ckpt" / "steps"),
                                                       max_to_keep=1)
        self.history, self._steps = [], {}
        if self.manager.latest_checkpoint:
            _restore(self.checkpoint, self.manager.latest_checkpoint)
        self._restore_mid_epoch()
        self.history = self._read_history()[:int(self.epoch.numpy())]

    def _restore_mid_epoch(self) -> None:
        """The mid-epoch checkpoint when it lies inside the epoch after the latest epoch checkpoint
        (an older one, from an epoch already finished, is ignored)."""
        path = self.step_manager.latest_checkpoint
        if not path:
            return
        try:
            its_epoch = tf.train.load_checkpoint(path).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")
        except (ValueError, tf.errors.OpError):
            return
        if int(its_epoch) == int(self.epoch.numpy()):
            _restore(self.step_checkpoint, path)
            if self.progress:
                tqdm.write(f"resuming epoch {int(its_epoch) + 1} at step {int(self.position.numpy())}"
                           f"/{self.steps_per_epoch}")

    def _save_mid_epoch(self, step: int, rng, loss_sum: float, correct: float, seconds: float):
        self.position.assign(step)
        self.sampler_state.assign(json.dumps(rng.bit_generator.state))
        self.sums.assign([loss_sum, correct, seconds])
        self.step_manager.save(checkpoint_number=int(self.optimizer.iterations))

    def _read_history(self) -> list:
        path = self.out / "history.json"
        return json.loads(path.read_text()) if path.exists() else []

    def sample_configs(self, rng) -> list:
        if self.settings.sampling == "uniform":
            return [self.space.sample(rng)]
        return [self.space.largest(), self.space.smallest()] + [
            self.space.sample(rng) for _ in range(self.settings.num_random)]

    def _replica_step(self, images, labels, masks, grids):
        """Sum of the subnets' gradients (the first, the largest under sandwich, teaches the rest)."""
        s, variables = self.settings, self.supernet.trainable_variables
        total, teacher, first_correct, summed = 0.0, None, None, None
        for (tokenizer, size, patch), subnet in zip(grids, masks):
            with tf.GradientTape() as tape:
                logits = self.supernet.forward(resize_images(images, size), subnet, patch, tokenizer=tokenizer)
                if teacher is not None and s.distill:
                    per_example = distill_loss(teacher, logits)
                else:
                    per_example = smoothed_loss(labels, logits, self.space.num_classes, s.label_smoothing)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=s.batch_size)
            grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            summed = grads if summed is None else [a + b for a, b in zip(summed, grads)]
            total += loss
            if teacher is None:
                teacher = logits
                first_correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))
        self.optimizer.apply_gradients(zip(summed, variables))
        return total / len(grids), first_correct

    def _step(self, grids: tuple):
        """One compiled training step per tuple of token grids: the subnets' other sizes are masks."""
        if grids not in self._steps:
            def step(images, labels, masks):
                return self.strategy.run(lambda x, y: self._replica_step(x, y, masks, grids), args=(images, labels))
            self._steps[grids] = tf.function(step)
        return self._steps[grids]

    def fit(self, stop_after: int | None = None, stop_after_steps: int | None = None) -> list:
        """Train up to `settings.epochs` (from the latest checkpoint); `stop_after` ends this call
        after that many epochs, `stop_after_steps` after that many optimizer steps (as a kill would)."""
        s = self.settings
        writer = tf.summary.create_file_writer(str(self.out / "logs"))
        done_now = steps_now = 0
        for epoch in range(int(self.epoch.numpy()), s.epochs):
            if stop_after is not None and done_now >= stop_after:
                break
            start = time.time()
            first = int(self.position.numpy())
            if first:                                   # resuming inside this epoch
                rng = np.random.default_rng()
                rng.bit_generator.state = json.loads(self.sampler_state.numpy().decode())
                loss_sum, correct, earlier_seconds = (float(v) for v in self.sums.numpy())
            else:
                rng = batches.epoch_rng(s.seed, epoch, 1)
                loss_sum = correct = earlier_seconds = 0.0
            seen = first * s.batch_size
            dataset = self.strategy.experimental_distribute_dataset(
                batches.train_batches(self.x_train, self.y_train, s.batch_size, s.seed, epoch,
                                      s.augments(len(self.x_train)), self.passes, skip_batches=first))
            bar = tqdm(dataset, total=self.steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{s.epochs}",
                       disable=not self.progress, leave=False)
            for step, (images, labels) in enumerate(bar, first + 1):
                if stop_after_steps is not None and steps_now >= stop_after_steps:
                    bar.close()
                    return self.history
                configs = self.sample_configs(rng)
                grids = tuple((self.space.tokenizer_index(c), c.image_size, c.patch_size) for c in configs)
                loss, hits = self._step(grids)(images, labels, tuple(self.supernet.masks(c) for c in configs))
                loss_sum += float(self.strategy.reduce("SUM", loss, axis=None))
                correct += float(self.strategy.reduce("SUM", hits, axis=None))
                seen += s.batch_size
                steps_now += 1
                bar.set_postfix(loss=f"{loss_sum / step:.3f}", acc=f"{correct / seen:.3f}")
                if s.checkpoint_steps and step % s.checkpoint_steps == 0 and step < self.steps_per_epoch:
                    self._save_mid_epoch(step, rng, loss_sum, correct,
                                         earlier_seconds + time.time() - start)
            bar.close()
            self.position.assign(0)
            seconds = earlier_seconds + time.time() - start
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, self.steps_per_epoch),
                      "train_acc_first": correct / max(1.0, seen),
                      "val_acc_largest": evaluate_subnet(self.supernet, self.space.largest(), self.x_val, self.y_val),
                      "val_acc_smallest": evaluate_subnet(self.supernet, self.space.smallest(), self.x_val, self.y_val),
                      "lr": float(tf.convert_to_tensor(self.optimizer.learning_rate)), "epoch_seconds": seconds}
            self.epoch.assign(epoch + 1)
            self.manager.save(checkpoint_number=epoch + 1)
            self.history.append(record)
            atomic.write_json(self.out / "history.json", self.history)
            with writer.as_default(step=epoch + 1):
                for key, value in record.items():
                    if key != "epoch":
                        log_scalar(key, value)
            writer.flush()
            if self.progress:
                tqdm.write(f"epoch {epoch + 1}/{s.epochs}: loss {record['train_loss']:.3f}, val acc largest "
                           f"{record['val_acc_largest']:.3f} smallest {record['val_acc_smallest']:.3f} "
                           f"({seconds:.0f} s)")
            done_now += 1
        return self.history
