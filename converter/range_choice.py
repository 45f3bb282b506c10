"""`--range auto`: the activation-range method chosen on the validation split.

Which clipping keeps the most int8 accuracy depends on the model: a 99.9th percentile
clips a stem's or a softmax-fed tensor's rare large values that the classifier needs, and
min/max wastes int8 steps on outliers elsewhere. Each candidate's int8 model (the numpy
reference, the kernels' oracle) is scored on held-out validation images of the training
set, never the test set. Ties keep the earlier candidate, so the plain default wins unless
another is measurably better. Calibration images come from the rest of the training set.
"""
from __future__ import annotations

import numpy as np

from common import datasets
from common.errors import UserError

from . import calibrate as cal
from .qmodel import quantize_images, run
from .quantize import build_qmodel, clipped_ranges

CANDIDATES = (("percentile", 99.9), ("percentile", 99.99), ("mse", 99.9), ("minmax", 99.9))
MIN_VALIDATION_IMAGES = 100


def split_for_auto(x_train, y_train, val_images: int) -> tuple:
    """`val_images`: how many of the validation split to score on (0: all)."""
    # the deterministic train/val split the search and fine-tuning use; calibration (and QAT) draw
    # from x_fit, so no scored image was calibrated on
    if len(x_train) * 0.1 < MIN_VALIDATION_IMAGES:
        raise UserError(f"--range auto scores each range method on {MIN_VALIDATION_IMAGES} or more validation "
                        f"images (10% of the training split); this dataset has {len(x_train)} training images: "
                        f"pass --range percentile")
    x_fit, y_fit, x_val, y_val = datasets.train_val_split(x_train, y_train)
    return x_fit, y_fit, x_val[:val_images or None], y_val[:val_images or None]


def choose(arch, weights, calib_images, x_val, y_val, learned_ranges=None, progress=False) -> dict:
    """The candidate whose int8 model scores best on (x_val, y_val): {method, percentile,
    validation_images, scores: [{method, percentile, val_int8_top1}, ...]}."""
    observer = cal.calibrate(arch, weights, calib_images, progress=progress)
    images_q = quantize_images(cal.check_images(arch, x_val) / 255.0)
    scores = []
    for method, percentile in CANDIDATES:
        ranges = clipped_ranges(observer, method, percentile)
        ranges.update(learned_ranges or {})
        logits = run(build_qmodel(arch, weights, ranges), images_q)
        scores.append({"method": method, "percentile": percentile,
                       "val_int8_top1": float(np.mean(np.argmax(logits, axis=1) == y_val))})
    best = max(scores, key=lambda s: s["val_int8_top1"])          # max keeps the first of equals
    return {"method": best["method"], "percentile": best["percentile"], "validation_images": int(len(y_val)),
            "scores": scores}


def method_name(entry: dict) -> str:
    """'percentile 99.9', 'mse' or 'minmax' of a report's `quantization` (or one of its scores)."""
    method = entry.get("method", "percentile")
    return f"percentile {entry.get('percentile', 99.9):g}" if method == "percentile" else method


def describe(quantization: dict) -> str:
    """How a conversion chose its activation ranges: 'percentile 99.9', or 'auto: mse'."""
    name = method_name(quantization)
    return f"auto: {name}" if "range_choice" in quantization else name
