"""Fine-tune an exported (static) subnet: the supernet trainer's optimizer, loss and
pipeline on one fixed architecture, as a compiled step; a checkpoint per epoch in
`backup_dir` makes an interrupted run resume exactly."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from common import datasets

from . import batches
from .run_folder import TrainSettings
from .train import make_optimizer, smoothed_loss


def evaluate_model(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Top-1 accuracy of a static ViT on uint8 images."""
    return batches.top1(lambda images: model(images, training=False), x, y, model.input_shape[1],
                         model.input_shape[3], batch_size)


def finetune_subnet(model: keras.Model, x_train, y_train, x_val, y_val, settings: TrainSettings,
                    backup_dir=None, progress: bool = True, stop_after: int | None = None) -> list:
    """Train `model` in place for `settings.epochs` (this call: at most `stop_after` epochs);
    returns this call's per-epoch metrics. Images are uint8 at any size (resized to the model's input)."""
    size, channels = model.input_shape[1], model.input_shape[3]
    num_classes = model.output_shape[-1]
    x_train = datasets.resize(x_train, size, size, channels)
    steps = len(x_train) // settings.batch_size
    optimizer = make_optimizer(settings, steps)
    optimizer.build(model.trainable_variables)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    manager = None
    if backup_dir is not None:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
        manager = tf.train.CheckpointManager(checkpoint, str(backup_dir), max_to_keep=1)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(smoothed_loss(labels, logits, num_classes, settings.label_smoothing))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss, tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))

    history = []
    for epoch in range(int(epoch_var.numpy()), settings.epochs):
        if stop_after is not None and len(history) >= stop_after:
            break
        start, loss_sum, correct = time.time(), 0.0, 0.0
        dataset = batches.train_batches(x_train, y_train, settings.batch_size, settings.seed, epoch, settings.augment)
        bar = tqdm(dataset, total=steps, desc=f"finetune {epoch + 1}/{settings.epochs}", disable=not progress,
                   leave=False)
        for i, (images, labels) in enumerate(bar, 1):
            loss, hits = step(images, labels)
            loss_sum, correct = loss_sum + float(loss), correct + float(hits)
            bar.set_postfix(loss=f"{loss_sum / i:.3f}", acc=f"{correct / (i * settings.batch_size):.3f}")
        bar.close()
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, steps),
                        "val_acc": evaluate_model(model, x_val, y_val), "epoch_seconds": time.time() - start})
        epoch_var.assign(epoch + 1)
        if manager is not None:
            manager.save(checkpoint_number=epoch + 1)
        if progress:
            tqdm.write(f"finetune epoch {epoch + 1}/{settings.epochs}: loss {history[-1]['train_loss']:.3f}, "
                       f"val acc {history[-1]['val_acc']:.3f}")
    return history


def clear_backup(backup_dir) -> None:
    shutil.rmtree(Path(backup_dir), ignore_errors=True)
