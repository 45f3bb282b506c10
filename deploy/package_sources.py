"""The sources every deployment package holds (Arduino / PlatformIO library, CMake package).

One source root, the package's only include path:

    <Name>.h, <Name>.cpp               the Classifier API: begin() / predict()
    <Name>_model_data.{h,cpp}          the .tflite as a const (flash) array
    mcuformer/*.{h,cpp}                tflm_ops/src kernels + RegisterOps, the model CRC-32 check
    tflm_config.h                      TFLM's settings (TF_LITE_STATIC_MEMORY, CMSIS_NN on DSP cores)
    tensorflow/, third_party/, signal/ the pruned TFLM tree (deploy/tflm_tree.py)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

from .app import arena_size
from .model_dir import read_model_dir
from .tflm_tree import copy_pruned_tree

KERNEL_SRC = Path(__file__).resolve().parent.parent / "tflm_ops" / "src"
MODEL_CRC_SOURCES = [Path(__file__).resolve().parent / "runner" / name for name in ("model_crc.h", "model_crc.cc")]
TEMPLATES = Path(__file__).resolve().parent / "arduino"
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


@dataclass
class PackageSources:
    values: dict            # template values: NAME, HEIGHT, ..., ARENA, MODEL_BYTES
    kernels: list           # file names in mcuformer/
    tflm_files: list        # TFLM files copied, relative to the source root


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UserError(f"library name {name!r} must start with a letter and hold only letters, digits and _")


def _model_symbols(header: str) -> tuple:
    array = re.search(r"extern\s+(?:alignas\(\d+\)\s+)?const\s+unsigned\s+char\s+(\w+)\s*\[\s*\]", header)
    length = re.search(r"extern\s+const\s+(?:unsigned\s+int|int|size_t|uint32_t)\s+(\w+)\s*;", header)
    crc = re.search(r"extern\s+const\s+(?:unsigned\s+int|uint32_t)\s+(\w+_crc32)\s*;", header)
    if not array or not length or not crc:
        raise UserError("model_data.h does not declare the model array, its length and its CRC-32; "
                        "convert the model again")
    return array.group(1), length.group(1), crc.group(1)


def _copy_kernels(dest: Path) -> list:
    sources = sorted(p for p in KERNEL_SRC.iterdir() if p.suffix in (".cc", ".h")) + MODEL_CRC_SOURCES
    if not any(p.suffix == ".cc" for p in sources):
        raise UserError(f"no kernel sources in {KERNEL_SRC}; this installation is incomplete")
    dest.mkdir(parents=True)
    local = {p.name for p in sources}
    written = []
    for src in sources:
        text = src.read_text()
        # the project's headers sit beside them, included by bare name
        text = re.sub(r'#include\s+"(?:[\w./]*/)?([\w.]+)"',
                      lambda m: f'#include "{m.group(1)}"' if m.group(1) in local else m.group(0), text)
        name = src.stem + (".cpp" if src.suffix == ".cc" else ".h")
        (dest / name).write_text(text)
        written.append(name)
    return written


def fill(template: str, templates: Path = TEMPLATES, **values) -> str:
    text = (templates / template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    left = re.search(r"\{\{\w+\}\}", text)
    if left:
        raise AssertionError(f"template {template}: {left.group(0)} not filled")
    return text


def package_inputs(model_dir, name: str, data: str, num_images: int, class_names=None) -> tuple:
    """(template values, sample images, their labels) of a converted model; UserError on bad input."""
    check_name(name)
    model_dir = Path(model_dir)
    model = read_model_dir(model_dir)
    images, labels, names = sample_images(model, data, num_images, class_names)
    return _model_values(model, model_dir, name, names), images, labels


def _model_values(model, model_dir: Path, name: str, class_names: list) -> dict:
    """The template values of a converted model (its shape, arena, symbols, sizes)."""
    (h, w, c), num_classes = model.input_shape, model.num_classes
    array_sym, length_sym, crc_sym = _model_symbols((model_dir / "model_data.h").read_text())
    return dict(NAME=name, HEIGHT=h, WIDTH=w, CHANNELS=c, NUM_CLASSES=num_classes,
                ARENA=arena_size(model.required_arena_bytes),
                ARENA_HOST=arena_size(model.required_arena_bytes_host), MODEL_ARRAY=array_sym, MODEL_LEN=length_sym,
                MODEL_CRC=crc_sym, MODEL_BYTES=(model_dir / "model.tflite").stat().st_size,
                CLASS_NAMES=", ".join(json.dumps(n) for n in class_names))


def write_package_sources(model_dir, src: Path, values: dict) -> PackageSources:
    """Write the source root `src` (created) for the model in `model_dir`."""
    from .tflm_tree import package_tree

    model_dir, name = Path(model_dir), values["NAME"]
    kernels = _copy_kernels(src / "mcuformer")
    model_cc = (model_dir / "model_data.cc").read_text().replace('"model_data.h"', f'"{name}_model_data.h"')
    (src / f"{name}_model_data.h").write_text((model_dir / "model_data.h").read_text())
    (src / f"{name}_model_data.cpp").write_text(model_cc)
    (src / f"{name}.h").write_text(fill("Classifier.h.in", **values))
    (src / f"{name}.cpp").write_text(fill("Classifier.cpp.in", **values))
    own = sorted(p for p in src.rglob("*") if p.is_file())
    tflm_files = copy_pruned_tree(package_tree(), src, own)
    return PackageSources(values, kernels, tflm_files)


def _c_array(values, per_line: int = 16) -> str:
    items = [str(int(v)) for v in values]
    return ",\n".join("    " + ", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))


def sample_images(model, data: str, num_images: int, class_names=None) -> tuple:
    """(the first test images in the model's int8 format, their labels, the class names)."""
    from common import datasets
    from tflm_ops.contract import quantize_input

    ds = datasets.load(data)
    h, w, c = model.input_shape
    images = quantize_input(datasets.resize(ds.x_test[:num_images], h, w, c))
    names = list(class_names or (ds.class_names if len(ds.class_names) == model.num_classes
                                 else [str(i) for i in range(model.num_classes)]))
    return images, ds.y_test[:num_images], names


def sample_images_h(images, labels) -> str:
    return fill("sample_images.h.in", NUM_IMAGES=len(images), IMAGE_BYTES=images[0].size,
                LABELS=", ".join(str(int(l)) for l in labels),
                IMAGES=",\n".join("  {\n" + _c_array(img.reshape(-1)) + "\n  }" for img in images))


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
