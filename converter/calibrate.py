"""Calibration: float activation ranges of every quantized point.

The float forward (`float_model.forward`) taps each point; `RangeObserver`
keeps its exact min/max and a bounded random sample of its values, from which
`select_range` picks the clipping range:

* `minmax`: the observed extremes;
* `percentile`: the `percentile`-th / (100 - `percentile`)-th percentiles;
* `mse`: the clipping (a shrink factor of the extremes) minimising the mean
  squared int8 quantization error of the sampled values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from common.errors import UserError

from .float_model import forward

METHODS = ("percentile", "mse", "minmax")
SAMPLE_PER_BATCH = 65536
MIN_SCALE = 1e-8


@dataclass
class QParams:
    scale: float
    zero_point: int


def qparams(lo: float, hi: float, symmetric: bool) -> QParams:
    """int8 scale/zero point covering [lo, hi] (always including 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        return QParams(max(max(-lo, hi) / 127.0, MIN_SCALE), 0)
    scale = max((hi - lo) / 255.0, MIN_SCALE)
    return QParams(scale, int(np.clip(round(-128 - lo / scale), -128, 127)))


def _quant_mse(values, lo, hi, symmetric) -> float:
    qp = qparams(lo, hi, symmetric)
    q = np.clip(np.round(values / qp.scale) + qp.zero_point, -128, 127)
    return float(np.mean(((q - qp.zero_point) * qp.scale - values) ** 2))


def select_range(values, lo, hi, method="percentile", percentile=99.9, symmetric=False) -> tuple:
    if method == "minmax" or values.size == 0:
        return lo, hi
    if method == "percentile":
        return (float(np.percentile(values, 100.0 - percentile)), float(np.percentile(values, percentile)))
    if method == "mse":
        candidates = np.linspace(0.2, 1.0, 41)
        errors = [_quant_mse(values, lo * c, hi * c, symmetric) for c in candidates]
        best = candidates[int(np.argmin(errors))]
        return lo * best, hi * best
    raise UserError(f"unknown range method {method!r}; choose one of {', '.join(METHODS)}")


class RangeObserver:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.lo, self.hi, self.samples = {}, {}, {}

    def __call__(self, name, value):
        flat = np.asarray(value, np.float64).reshape(-1)
        self.lo[name] = min(self.lo.get(name, np.inf), float(flat.min()))
        self.hi[name] = max(self.hi.get(name, -np.inf), float(flat.max()))
        if flat.size > SAMPLE_PER_BATCH:
            flat = self.rng.choice(flat, SAMPLE_PER_BATCH, replace=False)
        self.samples.setdefault(name, []).append(flat.astype(np.float32))

    def ranges(self, method="percentile", percentile=99.9, symmetric=()) -> dict:
        """name -> (lo, hi); `symmetric` names are clipped symmetrically."""
        out = {}
        for name in self.lo:
            values = np.concatenate(self.samples[name]).astype(np.float64)
            out[name] = select_range(values, self.lo[name], self.hi[name], method, percentile,
                                     name in symmetric)
        return out


def check_images(arch, images) -> np.ndarray:
    """Calibration/evaluation images as float [N, H, W, C] pixels/255; wrong shapes are a UserError."""
    images = np.asarray(images)
    want = (arch.image_size, arch.image_size, arch.channels)
    if images.ndim == 3 and arch.channels == 1:
        images = images[..., None]
    if images.ndim != 4 or tuple(images.shape[1:]) != want or images.shape[0] == 0:
        raise UserError(f"calibration data has shape {tuple(images.shape)}, but the model expects "
                        f"images of shape (N, {want[0]}, {want[1]}, {want[2]})")
    return images


def calibrate(arch, weights, images, batch=64, progress=True) -> RangeObserver:
    """Run the float model over `images` (float pixels/255) and record all ranges."""
    images = check_images(arch, images)
    observer = RangeObserver()
    for start in tqdm(range(0, len(images), batch), desc="calibrate", unit="batch", disable=not progress):
        forward(arch, weights, images[start:start + batch], observer)
    return observer
