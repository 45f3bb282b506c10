import gzip
import struct

import numpy as np
import pytest
from conftest import assert_one_line_error

from common import datasets
from common.errors import UserError


def test_fashion_mnist_is_real(fashion_mnist):
    ds = fashion_mnist
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.num_classes == 10
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.x_train.max() == 255 and 50 < ds.x_train.mean() < 90   # real images, not zeros


def test_validation_split_is_deterministic_stratified_and_disjoint(fashion_mnist):
    x, y = fashion_mnist.x_train[:5000], fashion_mnist.y_train[:5000]
    idx = np.arange(len(y))
    a = datasets.train_val_split(idx[:, None], y, 0.1, seed=0)
    b = datasets.train_val_split(idx[:, None], y, 0.1, seed=0)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    tr, va = set(a[0][:, 0]), set(a[2][:, 0])
    assert not tr & va and len(tr) + len(va) == len(y)
    assert abs(len(va) - 500) <= 10
    assert np.abs(np.bincount(a[3], minlength=10) - np.bincount(y, minlength=10) * 0.1).max() <= 1


def test_resize_and_channels(fashion_mnist):
    x = fashion_mnist.x_test[:8]
    up = datasets.resize(x, 32, 32, 3)
    assert up.shape == (8, 32, 32, 3) and up.dtype == np.uint8
    assert np.array_equal(up[..., 0], up[..., 2])
    same = datasets.resize(x, 28, 28, 1)
    assert np.array_equal(same, x)
    from PIL import Image
    up = datasets.resize(x, 56, 56, 1)
    pil = np.stack([np.asarray(Image.fromarray(i[..., 0]).resize((56, 56), Image.BILINEAR)) for i in x])
    assert np.abs(up[..., 0].astype(int) - pil).max() <= 1   # same bilinear as PIL


def _write_idx(path, arr, magic_type=0x08):
    header = bytes([0, 0, magic_type, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_fmnist(root, n=20):
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))


def test_malformed_idx(tmp_path):
    _fake_fmnist(tmp_path)
    assert datasets.load_fashion_mnist(tmp_path).x_train.shape == (20, 28, 28, 1)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-7])
    with pytest.raises(UserError, match="malformed"):
        datasets.load_fashion_mnist(tmp_path)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x12\x34" + raw[2:])
    with pytest.raises(UserError, match="bad magic"):
        datasets.load_fashion_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="cannot be read"):
        datasets.load_fashion_mnist(tmp_path)
    _fake_fmnist(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(19))
    with pytest.raises(UserError, match="20 images but 19 labels"):
        datasets.load_fashion_mnist(tmp_path)


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        datasets.load_fashion_mnist(tmp_path / "empty")


def _image_folder(root, classes=("cat", "dog", "owl"), per_class=10, size=(20, 24), mode="RGB"):
    from PIL import Image
    rng = np.random.default_rng(1)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(root / c / f"{i}.png")


def test_image_folder(tmp_path):
    _image_folder(tmp_path / "imgs")
    ds = datasets.load(str(tmp_path / "imgs"))
    assert ds.class_names == ["cat", "dog", "owl"]
    assert ds.x_train.shape == (24, 20, 24, 3) and ds.x_test.shape == (6, 20, 24, 3)
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    resized = datasets.load_image_folder(tmp_path / "imgs", image_size=(16, 16))
    assert resized.x_train.shape[1:] == (16, 16, 3)


def test_image_folder_with_splits_and_grayscale(tmp_path):
    _image_folder(tmp_path / "d" / "train", per_class=4, mode="L")
    _image_folder(tmp_path / "d" / "test", per_class=2, mode="L")
    ds = datasets.load(str(tmp_path / "d"))
    assert ds.x_train.shape == (12, 20, 24, 1) and ds.x_test.shape == (6, 20, 24, 1)


def test_bad_image_folders(tmp_path):
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(UserError, match="one sub-folder per class"):
        datasets.load(str(tmp_path / "one"))
    _image_folder(tmp_path / "bad", per_class=2)
    (tmp_path / "bad" / "dog" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(UserError, match="broken.png"):
        datasets.load(str(tmp_path / "bad"))
    with pytest.raises(UserError, match="neither"):
        datasets.load(str(tmp_path / "missing"))


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y_train=rng.integers(0, 4, 30),
             x_test=rng.random((10, 8, 8)).astype(np.float32), y_test=rng.integers(0, 4, 10))
    ds = datasets.load(str(path))
    assert ds.x_train.shape == (30, 8, 8, 1) and ds.x_test.dtype == np.uint8
    np.savez(tmp_path / "nokey.npz", x_train=np.zeros((2, 8, 8), np.uint8), y_train=np.zeros(2, int))
    with pytest.raises(UserError, match="lacks x_test, y_test"):
        datasets.load(str(tmp_path / "nokey.npz"))
    np.savez(tmp_path / "count.npz", x_train=np.zeros((2, 8, 8), np.uint8), y_train=np.zeros(3, int),
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.zeros(2, int))
    with pytest.raises(UserError, match="2 images but y_train has 3"):
        datasets.load(str(tmp_path / "count.npz"))
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((2, 8), np.uint8), y_train=np.zeros(2, int),
             x_test=np.zeros((2, 8), np.uint8), y_test=np.zeros(2, int))
    with pytest.raises(UserError, match="must have shape"):
        datasets.load(str(tmp_path / "shape.npz"))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="cannot be read"):
        datasets.load(str(tmp_path / "corrupt.npz"))


def _constant_folder(root, colours: dict, size=(32, 32), mode="RGB"):
    from PIL import Image
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for k in range(5):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(np.full(shape, colour, np.uint8), mode).save(root / name / f"{k}.png")


def test_image_folders_resize_through_the_one_resize_function(tmp_path):
    # constant colours: bilinear resampling keeps them, RGB -> 1 channel is the ITU-R 601 luma (by hand)
    _constant_folder(tmp_path / "rgb", {"a": (200, 100, 50), "b": (10, 20, 30)})
    ds = datasets.resized(datasets.load(str(tmp_path / "rgb")), 28, 28, 1)
    assert ds.x_train.shape[1:] == (28, 28, 1) and ds.x_test.shape[1:] == (28, 28, 1)
    luma = {0: round(0.299 * 200 + 0.587 * 100 + 0.114 * 50), 1: round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)}
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for image, label in zip(x, y):
            assert np.all(image == luma[int(label)])
    _constant_folder(tmp_path / "gray", {"a": 77, "b": 150}, size=(20, 20), mode="L")
    ds = datasets.load_image_folder(tmp_path / "gray", image_size=(32, 32))
    ds = datasets.resized(ds, 32, 32, 3)
    assert ds.x_train.shape[1:] == (32, 32, 3)
    assert all(np.all(image == (77 if label == 0 else 150)) for image, label in zip(ds.x_train, ds.y_train))


def test_a_folder_of_mixed_sizes_and_modes_is_read_like_resize_does(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    for name, (pixels, mode) in {"a": (big, "RGB"), "b": (small, "L")}.items():
        (tmp_path / "d" / "train" / name).mkdir(parents=True)
        (tmp_path / "d" / "test" / name).mkdir(parents=True)
        for split in ("train", "test"):
            Image.fromarray(pixels, mode).save(tmp_path / "d" / split / name / "0.png")
    ds = datasets.load_image_folder(tmp_path / "d", image_size=(28, 28))
    assert np.array_equal(ds.x_train[0], datasets.resize(big[None], 28, 28, 3)[0])
    assert np.array_equal(ds.x_train[1], datasets.resize(small[None, ..., None], 28, 28, 3)[0])
    assert np.array_equal(ds.x_train[1][..., 0], ds.x_train[1][..., 2])        # gray stays gray in RGB


def test_unreadable_data_files_say_what_is_wrong_in_words(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"cannot be read \(not a numpy .npz archive\); write it with numpy.savez"):
        datasets.load(str(tmp_path / "d.npz"))
    _image_folder(tmp_path / "bad", per_class=2)
    (tmp_path / "bad" / "cat" / "0.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(UserError, match=r"0.png cannot be read \(not an image format Pillow can read\)"):
        datasets.load(str(tmp_path / "bad"))
