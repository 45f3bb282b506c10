"""Image-classification data: Fashion-MNIST (Debian's IDX files), an image
folder (one sub-folder per class) or a .npz (x_train, y_train, x_test, y_test).

Every loader returns uint8 images in NHWC layout and int64 labels. The model
sees `pixels / 255` (float) or, deployed, `pixels - 128` (int8, scale 1/255,
zero point -128), so the int8 input needs no calibration.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff"}
DEFAULT_SOURCE = "fashion_mnist"
NAMED_SOURCES = (DEFAULT_SOURCE, "fashion-mnist")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])


def check_source(source: str) -> None:
    """The quick check of a data source (before any command's heavy work): it exists."""
    if source in NAMED_SOURCES:
        _fashion_mnist_root()
        return
    path = Path(source)
    if path.suffix == ".npz":
        if not path.is_file():
            raise UserError(f".npz file {path} does not exist")
    elif not path.is_dir():
        raise UserError(f"data source {source!r} is neither 'fashion_mnist', an existing image folder "
                        f"nor a .npz file")


def load(source: str = DEFAULT_SOURCE, image_size: tuple | None = None) -> Dataset:
    """Load by name (`fashion_mnist`), image-folder path or .npz path."""
    check_source(source)
    if source in NAMED_SOURCES:
        return load_fashion_mnist()
    path = Path(source)
    if path.suffix == ".npz":
        return load_npz(path)
    return load_image_folder(path, image_size=image_size)


def _why(exc: Exception, corrupt: str = "corrupt or truncated") -> str:
    """What went wrong reading a file, in words (not the exception's raw payload)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, EOFError):
        return "truncated"
    if type(exc).__name__ == "UnidentifiedImageError":
        return "not an image format Pillow can read"
    return corrupt


# --- Fashion-MNIST (IDX) -------------------------------------------------

def _read_idx(path: Path, expect_ndim: int) -> np.ndarray:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"IDX file {path} cannot be read ({_why(exc, 'corrupt or not gzip')}); reinstall it "
                        f"(apt-get install --reinstall dataset-fashion-mnist)") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"IDX file {path} is malformed: bad magic number (expected unsigned-byte IDX)")
    ndim = raw[3]
    if ndim != expect_ndim:
        raise UserError(f"IDX file {path} is malformed: {ndim} dimensions, expected {expect_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"IDX file {path} is malformed: truncated header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims))
    if len(raw) - header != count:
        raise UserError(f"IDX file {path} is malformed: {len(raw) - header} data bytes for shape {dims}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise UserError(f"Fashion-MNIST file {stem}[.gz] not found in {root}: install the data with "
                    f"`apt-get install dataset-fashion-mnist` (or pass --data PATH to an image folder or .npz)")


def _fashion_mnist_root(root: str | None = None) -> Path:
    root = Path(root or os.environ.get("MCUFORMER_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    if not root.is_dir():
        raise UserError(f"Fashion-MNIST not found at {root}: install it with "
                        f"`apt-get install dataset-fashion-mnist` (or pass --data PATH to an image folder or .npz)")
    return root


def load_fashion_mnist(root: str | None = None) -> Dataset:
    root = _fashion_mnist_root(root)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"), 3)
        y = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"), 1)
        if len(x) != len(y):
            raise UserError(f"Fashion-MNIST {split} split is malformed: {len(x)} images but {len(y)} labels")
        if y.size and y.max() >= len(FASHION_MNIST_CLASSES):
            raise UserError(f"Fashion-MNIST {split} labels are malformed: label {int(y.max())} >= 10")
        parts[split] = (x[..., None], y.astype(np.int64))
    return Dataset("fashion_mnist", *parts["train"], *parts["test"], list(FASHION_MNIST_CLASSES))


# --- .npz ------------------------------------------------------------------

def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise UserError(f"{where}: images must have shape (N, H, W) or (N, H, W, 1|3), got {x.shape}")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating) and x.size and 0.0 <= x.min() and x.max() <= 1.0:
        return np.round(x * 255.0).astype(np.uint8)
    raise UserError(f"{where}: images must be uint8 (0..255) or float in [0, 1], got {x.dtype}")


def load_npz(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise UserError(f".npz file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile/format errors come in many types
        raise UserError(f".npz file {path} cannot be read ({_why(exc, 'not a numpy .npz archive')}); "
                        f"write it with numpy.savez") from None
    needed = ["x_train", "y_train", "x_test", "y_test"]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise UserError(f".npz file {path} lacks {', '.join(missing)}; it needs {', '.join(needed)}")
    out = []
    for split in ("train", "test"):
        x = _as_images(arrays[f"x_{split}"], f"{path.name}: x_{split}")
        y = arrays[f"y_{split}"]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
            raise UserError(f"{path.name}: y_{split} must be a 1-D array of non-negative integer labels")
        if len(y) != len(x):
            raise UserError(f"{path.name}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        out += [x, y.astype(np.int64)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise UserError(f"{path.name}: train images {out[0].shape[1:]} and test images {out[2].shape[1:]} differ")
    num_classes = int(max(out[1].max(initial=0), out[3].max(initial=0))) + 1
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else [str(i) for i in range(num_classes)]
    return Dataset(path.stem, *out, names)


# --- image folder ------------------------------------------------------------

def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


GRAY_MODES = {"L", "1", "I;16", "I"}


def _read_image(file: Path) -> np.ndarray:
    """One image file as uint8 HWC at its own size: 1 channel if grayscale, else 3."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("L" if im.mode in GRAY_MODES else "RGB")
            arr = np.asarray(im, np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"image {file} cannot be read ({_why(exc)}); remove or replace it") from None
    return arr if arr.ndim == 3 else arr[..., None]


def _read_split(root: Path, class_names: list, size, channels: int) -> tuple:
    images, labels = [], []
    for label, name in enumerate(class_names):
        folder = root / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        for file in files:
            images.append(resize(_read_image(file)[None], size[0], size[1], channels)[0])
            labels.append(label)
    if not images:
        return np.zeros((0, size[0], size[1], channels), np.uint8), np.zeros(0, np.int64)
    return np.stack(images), np.asarray(labels, np.int64)


def load_image_folder(root: str | Path, image_size: tuple | None = None, test_fraction: float = 0.2) -> Dataset:
    """`root/<class>/*.png`, or `root/train/<class>/...` + `root/test/<class>/...`.

    Without train/test folders a deterministic, stratified `test_fraction` of
    each class becomes the test split. Images are resized (`resize`) to
    `image_size` (H, W), default the first image's size; all-grayscale
    folders stay 1-channel.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist")
    split_dirs = (root / "train", root / "test")
    has_splits = all(d.is_dir() for d in split_dirs)
    class_root = split_dirs[0] if has_splits else root
    class_names = [d.name for d in _class_dirs(class_root)]
    if len(class_names) < 2:
        raise UserError(f"image folder {class_root} needs one sub-folder per class (at least 2), "
                        f"found {len(class_names)}")
    files = [p for n in class_names for p in sorted((class_root / n).iterdir())
             if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"image folder {class_root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    modes, sizes = set(), []
    for file in files[:64]:
        try:
            with Image.open(file) as im:
                modes.add(im.mode)
                sizes.append((im.size[1], im.size[0]))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"image {file} cannot be read ({_why(exc)}); remove or replace it") from None
    channels = 1 if modes <= GRAY_MODES else 3
    size = tuple(image_size) if image_size else sizes[0]
    if has_splits:
        x_tr, y_tr = _read_split(split_dirs[0], class_names, size, channels)
        x_te, y_te = _read_split(split_dirs[1], class_names, size, channels)
    else:
        x, y = _read_split(root, class_names, size, channels)
        test_idx = _stratified_tail(y, test_fraction, seed=1234)
        mask = np.zeros(len(y), bool)
        mask[test_idx] = True
        x_tr, y_tr, x_te, y_te = x[~mask], y[~mask], x[mask], y[mask]
    return Dataset(root.name, x_tr, y_tr, x_te, y_te, class_names)


# --- splits and shaping ----------------------------------------------------------

def _stratified_tail(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        idx = idx[rng.permutation(len(idx))]
        take = int(round(len(idx) * fraction))
        if 0 < fraction and take == 0 and len(idx) > 1:
            take = 1
        picked.append(idx[:take])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def train_val_split(x: np.ndarray, y: np.ndarray, val_fraction: float = 0.1, seed: int = 0):
    """Deterministic stratified split of the *training* set into train/val.

    Search and calibration use only these; the test set is for final reports.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    val_idx = _stratified_tail(y, val_fraction, seed)
    mask = np.zeros(len(y), bool)
    mask[val_idx] = True
    return x[~mask], y[~mask], x[mask], y[mask]


def interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear (half-pixel centres) resampling matrix of shape (n_out, n_in)."""
    m = np.zeros((n_out, n_in), np.float32)
    scale = n_in / n_out
    for o in range(n_out):
        src = min(max((o + 0.5) * scale - 0.5, 0.0), n_in - 1)
        lo = int(np.floor(src))
        hi = min(lo + 1, n_in - 1)
        w = src - lo
        m[o, lo] += 1.0 - w
        m[o, hi] += w
    return m


def resize(x: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """Resize uint8 NHWC images (bilinear) and convert 1<->3 channels."""
    if x.ndim != 4:
        raise UserError(f"expected NHWC images, got shape {x.shape}")
    if channels not in (1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels}")
    out = x
    if x.shape[1:3] != (height, width):
        rows, cols = interp_matrix(x.shape[1], height), interp_matrix(x.shape[2], width)
        out = np.einsum("hi,nijc,wj->nhwc", rows, x.astype(np.float32), cols, optimize=True)
        out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if out.shape[-1] == channels:
        return out
    if channels == 3:
        return np.repeat(out, 3, axis=-1)
    luma = out.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


def resized(data: Dataset, height: int, width: int, channels: int) -> Dataset:
    """Both splits resized (`resize`) to a model's input."""
    return Dataset(data.name, resize(data.x_train, height, width, channels), data.y_train,
                   resize(data.x_test, height, width, channels), data.y_test, data.class_names)


def to_float(x: np.ndarray) -> np.ndarray:
    """The float model's input: pixels / 255."""
    return x.astype(np.float32) / 255.0


