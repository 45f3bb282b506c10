"""Fine-tune an exported (static) subnet: the supernet trainer's optimizer, loss and
pipeline on one fixed architecture, as a compiled step. The weights with the best
validation accuracy so far (the start counts, as epoch 0) are kept and handed back, so
fine-tuning never ends worse than it started. A checkpoint per epoch in `backup_dir`
(weights, optimizer, the best weights) makes an interrupted run resume exactly."""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from common import datasets
from common.errors import UserError

from . import batches
from .run_folder import TrainSettings
from .train import distill_loss, make_optimizer, smoothed_loss, step_floor_note
from .weight_average import WeightAverage


def evaluate_model(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Top-1 accuracy of a static ViT on uint8 images."""
    return batches.top1(lambda images: model(images, training=False), x, y, model.input_shape[1],
                         model.input_shape[3], batch_size)


class BestWeights(tf.Module):
    """A copy of the model's weights at its best validation accuracy (`epoch` 0 = the start)."""

    def __init__(self, model: keras.Model):
        super().__init__(name="best")
        self.weights = [tf.Variable(w, trainable=False) for w in model.weights]
        self.accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)

    @property
    def known(self) -> bool:
        return int(self.epoch.numpy()) >= 0

    def offer(self, model: keras.Model, accuracy: float, epoch: int) -> bool:
        """Keep `model`'s weights if they beat the best so far (ties keep the earlier)."""
        if self.known and accuracy <= float(self.accuracy.numpy()):
            return False
        for kept, w in zip(self.weights, model.weights):
            kept.assign(w)
        self.accuracy.assign(accuracy)
        self.epoch.assign(epoch)
        return True

    def restore_into(self, model: keras.Model) -> None:
        for w, kept in zip(model.weights, self.weights):
            w.assign(kept)


def finetune_subnet(model: keras.Model, x_train, y_train, x_val, y_val, settings: TrainSettings,
                    backup_dir=None, progress: bool = True, stop_after: int | None = None,
                    teacher: keras.Model | None = None) -> list:
    """Train `model` for `settings.epochs` (this call: at most `stop_after` epochs) and leave in
    it the weights with the best validation accuracy seen (the start included). Returns this
    call's per-epoch metrics; each record carries `best_val_acc` / `best_epoch` (0 = the start).
    Images are uint8 at any size (resized to the model's input). With a `teacher` (same input
    shape and classes), the loss mixes in its soft predictions by `settings.teacher_weight`.
    With `settings.ema_decay`, each epoch validates (and may keep) the weights' moving average."""
    size, channels = model.input_shape[1], model.input_shape[3]
    check_teacher(teacher, model)
    num_classes = model.output_shape[-1]
    x_train = datasets.resize(x_train, size, size, channels)
    steps, passes = settings.steps_per_epoch(len(x_train)), settings.passes_per_epoch(len(x_train))
    if progress and passes > 1:
        tqdm.write(step_floor_note(settings, len(x_train)))
    optimizer = make_optimizer(settings, steps)
    optimizer.build(model.trainable_variables)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    best = BestWeights(model)
    ema = WeightAverage(model, settings.ema_decay) if settings.ema_decay else None
    manager = None
    if backup_dir is not None:
        tracked = {"ema": ema} if ema is not None else {}
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var, best=best, **tracked)
        manager = tf.train.CheckpointManager(checkpoint, str(backup_dir), max_to_keep=1)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    if not best.known:
        best.offer(model, evaluate_model(model, x_val, y_val), 0)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = smoothed_loss(labels, logits, num_classes, settings.label_smoothing)
            if teacher is not None:
                w = settings.teacher_weight
                per_example = (1 - w) * per_example + w * distill_loss(teacher(images, training=False), logits)
            loss = tf.reduce_mean(per_example)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        if ema is not None:
            ema.update(model, optimizer.iterations)
        return loss, tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))

    history = []
    for epoch in range(int(epoch_var.numpy()), settings.epochs):
        if stop_after is not None and len(history) >= stop_after:
            break
        start, loss_sum, correct = time.time(), 0.0, 0.0
        dataset = batches.train_batches(x_train, y_train, settings.batch_size, settings.seed, epoch,
                                        settings.augments(len(x_train)), passes, erase=settings.erase)
        bar = tqdm(dataset, total=steps, desc=f"finetune {epoch + 1}/{settings.epochs}", disable=not progress,
                   leave=False)
        for i, (images, labels) in enumerate(bar, 1):
            loss, hits = step(images, labels)
            loss_sum, correct = loss_sum + float(loss), correct + float(hits)
            bar.set_postfix(loss=f"{loss_sum / i:.3f}", acc=f"{correct / (i * settings.batch_size):.3f}")
        bar.close()
        with ema.applied(model) if ema is not None else contextlib.nullcontext():
            val_acc = evaluate_model(model, x_val, y_val)
            best.offer(model, val_acc, epoch + 1)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, steps), "val_acc": val_acc,
                        "best_val_acc": float(best.accuracy.numpy()), "best_epoch": int(best.epoch.numpy()),
                        "optimizer_steps": int(optimizer.iterations), "epoch_seconds": time.time() - start})
        epoch_var.assign(epoch + 1)
        if manager is not None:
            manager.save(checkpoint_number=epoch + 1)
        if progress:
            tqdm.write(f"finetune epoch {epoch + 1}/{settings.epochs}: loss {history[-1]['train_loss']:.3f}, "
                       f"val acc {val_acc:.4f} (best {history[-1]['best_val_acc']:.4f}, epoch "
                       f"{history[-1]['best_epoch']})")
    best.restore_into(model)
    return history


def check_teacher(teacher, model) -> None:
    if teacher is None:
        return
    if tuple(teacher.input_shape[1:]) != tuple(model.input_shape[1:]) or teacher.output_shape[-1] != model.output_shape[-1]:
        raise UserError(f"the teacher takes {tuple(teacher.input_shape[1:])} images to {teacher.output_shape[-1]} "
                        f"classes but the subnet {tuple(model.input_shape[1:])} to {model.output_shape[-1]}; "
                        f"train a teacher for this subnet (mcuformer train-teacher)")


def clear_backup(backup_dir) -> None:
    shutil.rmtree(Path(backup_dir), ignore_errors=True)
