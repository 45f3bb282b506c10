"""Training batches: random erasing (keras_supernet/batches.py)."""
import numpy as np
import pytest

from common.errors import UserError
from keras_supernet import batches
from keras_supernet.run_folder import TrainSettings

H = W = 28


def _images(n, value=None):
    if value is not None:
        return np.full((n, H, W, 1), value, np.uint8)
    return np.random.default_rng(1).integers(0, 256, (n, H, W, 1)).astype(np.uint8)


def _epoch(x, **kw):
    y = np.zeros(len(x), np.int64)
    return np.concatenate([b.numpy() for b, _ in batches.train_batches(x, y, 128, seed=3, epoch=2, **kw)])


def test_erasing_replaces_one_rectangle_of_the_papers_size_by_noise():
    plain = _epoch(_images(256, 128), augment=False)
    erased = _epoch(_images(256, 128), augment=False, erase=1.0)
    for before, after in zip(plain[..., 0], erased[..., 0]):
        rows, cols = np.nonzero(np.abs(after - before) > 1e-6)
        assert len(rows), "probability 1 erases every image"
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        assert len(rows) == after[box].size, "the erased pixels fill their bounding box"
        # areas 2-40% of the image, each side rounded to whole pixels
        assert 0.5 * batches.ERASE_AREA[0] * H * W <= len(rows) <= 1.25 * batches.ERASE_AREA[1] * H * W
        assert after[box].min() >= 0 and after[box].max() <= 1 and after[box].std() > 0.1
    assert np.array_equal(plain, _epoch(_images(256, 128), augment=False, erase=0.0))


def test_erasing_probability_is_per_image():
    plain = _epoch(_images(2048, 128), augment=False)
    erased = _epoch(_images(2048, 128), augment=False, erase=0.3)
    share = np.mean(np.any(np.abs(erased - plain) > 1e-6, axis=(1, 2, 3)))
    assert abs(share - 0.3) < 0.04          # 3.9 standard deviations of a binomial share at n = 2,048


def test_erasing_leaves_a_runs_shifts_and_flips_and_repeats_exactly():
    x = _images(256)
    shifted = _epoch(x, augment=True)
    erased = _epoch(x, augment=True, erase=0.5)
    untouched = np.all(np.abs(erased - shifted) <= 1e-6, axis=(1, 2, 3))
    assert 0.3 < untouched.mean() < 0.7
    assert np.array_equal(erased[untouched], shifted[untouched])
    assert np.array_equal(erased, _epoch(x, augment=True, erase=0.5)), "a resumed epoch gets the same batches"


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_an_erasing_probability_outside_0_1_is_one_line(bad):
    with pytest.raises(UserError, match="erase: must be a probability"):
        TrainSettings(erase=bad)
