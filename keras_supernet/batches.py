"""tf.data pipelines for supernet training and subnet fine-tuning.

Every random choice of an epoch (order, augmentation) derives from
(seed, epoch), so re-running an epoch after a kill gives the same batches.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from common import datasets
from common.errors import UserError

SHIFT_PIXELS = 2      # light augmentation: random translation by up to 2 px, horizontal flip
# Random erasing (Zhong et al., AAAI 2020, their defaults): a rectangle of 2-40% of the image,
# aspect ratio log-uniform in [0.3, 3.3], filled with uniform noise.
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = (0.3, 1 / 0.3)


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """Independent generators per (seed, epoch, stream): 0 order, 1 subnets, 2 augmentation, 3 erasing."""
    return np.random.default_rng([seed, epoch, stream])


def split_data(data: datasets.Dataset, image_size: int, channels: int, val_fraction: float = 0.1,
               train_limit: int = 0, val_limit: int = 0):
    """(x_train, y_train, x_val, y_val) uint8 at `image_size` with `channels`: the deterministic
    train/val split of the *training* set (the test set is never used here)."""
    if data.num_classes < 2 or len(data.x_train) < 2:
        raise UserError(f"dataset {data.name!r} needs at least 2 classes and 2 training images")
    x_tr, y_tr, x_val, y_val = datasets.train_val_split(data.x_train, data.y_train, val_fraction)
    if train_limit:
        x_tr, y_tr = x_tr[:train_limit], y_tr[:train_limit]
    if val_limit:
        x_val, y_val = x_val[:val_limit], y_val[:val_limit]
    x_tr = datasets.resize(x_tr, image_size, image_size, channels)
    x_val = datasets.resize(x_val, image_size, image_size, channels)
    return x_tr, y_tr, x_val, y_val


def _augment(image, seed):
    h, w = image.shape[0], image.shape[1]
    padded = tf.pad(image, [[SHIFT_PIXELS, SHIFT_PIXELS], [SHIFT_PIXELS, SHIFT_PIXELS], [0, 0]], mode="REFLECT")
    image = tf.image.stateless_random_crop(padded, (h, w, image.shape[2]), seed=seed[0])
    return tf.image.stateless_random_flip_left_right(image, seed=seed[1])


def random_erase(image, seed, probability: float):
    """With `probability`, replace a random rectangle of `image` (h, w, c floats in [0, 1]) by
    uniform noise; `seed` is a (3, 2) stateless seed: apply?, rectangle, noise."""
    h, w = image.shape[0], image.shape[1]
    u = tf.random.stateless_uniform((4,), seed=seed[1])
    area = (ERASE_AREA[0] + u[0] * (ERASE_AREA[1] - ERASE_AREA[0])) * h * w
    log_lo, log_hi = np.log(ERASE_ASPECT[0]), np.log(ERASE_ASPECT[1])
    aspect = tf.exp(log_lo + u[1] * (log_hi - log_lo))
    eh = tf.clip_by_value(tf.round(tf.sqrt(area * aspect)), 1.0, float(h))
    ew = tf.clip_by_value(tf.round(tf.sqrt(area / aspect)), 1.0, float(w))
    top = tf.floor(u[2] * (h - eh + 1))
    left = tf.floor(u[3] * (w - ew + 1))
    rows = tf.range(h, dtype=tf.float32)[:, None, None]
    cols = tf.range(w, dtype=tf.float32)[None, :, None]
    inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    apply = tf.random.stateless_uniform((), seed=seed[0]) < probability
    noise = tf.random.stateless_uniform(tf.shape(image), seed=seed[2])
    return tf.where(inside & apply, noise, image)


def train_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epoch: int,
                  augment: bool = True, passes: int = 1, skip_batches: int = 0,
                  erase: float = 0.0) -> tf.data.Dataset:
    """One epoch of (float images / 255, int labels) batches: `passes` shuffled passes over the
    data (a step floor on a small set), then the last partial batch is dropped. `skip_batches`
    starts that same epoch after its first batches without reading them (a mid-epoch resume).
    `erase`: the probability of random erasing, after the shift and flip."""
    if len(x) < batch_size:
        raise UserError(f"batch size {batch_size} is larger than the {len(x)} training images; "
                        f"pass a smaller --batch-size")
    order_rng = epoch_rng(seed, epoch, 0)
    order = np.concatenate([order_rng.permutation(len(x)) for _ in range(passes)])
    seeds = epoch_rng(seed, epoch, 2).integers(0, 2**31 - 1, (len(order), 2, 2), dtype=np.int64)
    # a stream of its own, so that erasing leaves the shifts and flips of a run unchanged
    erase_seeds = epoch_rng(seed, epoch, 3).integers(0, 2**31 - 1, (len(order), 3, 2), dtype=np.int64)
    start = skip_batches * batch_size
    order, seeds, erase_seeds = order[start:], seeds[start:], erase_seeds[start:]
    ds = tf.data.Dataset.from_tensor_slices((x[order], y[order], seeds, erase_seeds))

    def prepare(image, label, s, e):
        image = tf.cast(image, tf.float32) / 255.0
        image = _augment(image, s) if augment else image
        return (random_erase(image, e, erase) if erase else image), label

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return ds.batch(batch_size).map(lambda a, b: (tf.cast(a, tf.float32) / 255.0, b)).prefetch(2)


def top1(predict, x: np.ndarray, y: np.ndarray, image_size: int, channels: int, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `predict` (float images -> logits) on uint8 images of any size,
    resized to `image_size` as deployment does."""
    x = datasets.resize(x, image_size, image_size, channels)
    correct = sum(int(tf.reduce_sum(tf.cast(tf.argmax(predict(a), axis=-1) == b, tf.int64)))
                  for a, b in eval_batches(x, y, batch_size))
    return correct / max(1, len(y))
