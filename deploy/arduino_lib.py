"""`mcuformer arduino-lib`: package a converted model as an Arduino library.

The library (Arduino 1.5 library format) holds the model array, this
project's kernels and a small `Classifier` API; it is used next to the TFLM
Arduino library (`Arduino_TensorFlowLite`), which provides TFLM itself:

    library.properties
    src/<Name>.h, src/<Name>.cpp            Classifier.begin() / predict()
    src/<Name>_model_data.{h,cpp}           the .tflite as a const (flash) array
    src/mcuformer/*.{h,cpp}                 tflm_ops/src kernels + RegisterOps, the model CRC-32 check
    examples/<Name>Classify/<Name>Classify.ino, sample_images.h
"""
from __future__ import annotations

import json
import re
from pathlib import Path


from common.atomic import atomic_dir
from common.errors import UserError
from tflm_ops.contract import quantize_input

from .app import arena_size
from .model_dir import read_model_dir

KERNEL_SRC = Path(__file__).resolve().parent.parent / "tflm_ops" / "src"
MODEL_CRC_SOURCES = [Path(__file__).resolve().parent / "runner" / name for name in ("model_crc.h", "model_crc.cc")]
TEMPLATES = Path(__file__).resolve().parent / "arduino"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


def _model_symbols(header: str) -> tuple:
    array = re.search(r"extern\s+(?:alignas\(\d+\)\s+)?const\s+unsigned\s+char\s+(\w+)\s*\[\s*\]", header)
    length = re.search(r"extern\s+const\s+(?:unsigned\s+int|int|size_t|uint32_t)\s+(\w+)\s*;", header)
    crc = re.search(r"extern\s+const\s+(?:unsigned\s+int|uint32_t)\s+(\w+_crc32)\s*;", header)
    if not array or not length or not crc:
        raise UserError("model_data.h does not declare the model array, its length and its CRC-32; "
                        "convert the model again")
    return array.group(1), length.group(1), crc.group(1)


def _c_array(values, per_line: int = 16) -> str:
    items = [str(int(v)) for v in values]
    return ",\n".join("    " + ", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))


def _copy_kernels(dest: Path) -> list:
    sources = sorted(p for p in KERNEL_SRC.iterdir() if p.suffix in (".cc", ".h")) + MODEL_CRC_SOURCES
    if not any(p.suffix == ".cc" for p in sources):
        raise UserError(f"no kernel sources in {KERNEL_SRC}; this installation is incomplete")
    dest.mkdir(parents=True)
    local = {p.name for p in sources}
    written = []
    for src in sources:
        text = src.read_text()
        # Project headers are included by bare name: Arduino adds only src/ to the include path.
        text = re.sub(r'#include\s+"(?:[\w./]*/)?([\w.]+)"',
                      lambda m: f'#include "{m.group(1)}"' if m.group(1) in local else m.group(0), text)
        name = src.stem + (".cpp" if src.suffix == ".cc" else ".h")
        (dest / name).write_text(text)
        written.append(name)
    return written


def _fill(template: str, **values) -> str:
    text = (TEMPLATES / template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    left = re.search(r"\{\{\w+\}\}", text)
    if left:
        raise AssertionError(f"template {template}: {left.group(0)} not filled")
    return text


def write_arduino_library(model_dir, out, name: str = "MCUFormerModel", data: str = "fashion_mnist",
                          num_images: int = 3, force: bool = False, class_names=None) -> Path:
    """Write the Arduino library for the converted model in `model_dir` to `out`."""
    from common import datasets

    model_dir, out = Path(model_dir), Path(out)
    if not _NAME.match(name):
        raise UserError(f"library name {name!r} must start with a letter and hold only letters, digits and _")
    model = read_model_dir(model_dir)
    (h, w, c), num_classes = model.input_shape, model.num_classes
    array_sym, length_sym, crc_sym = _model_symbols((model_dir / "model_data.h").read_text())
    arena = arena_size(model.required_arena_bytes)

    ds = datasets.load(data)
    images = quantize_input(datasets.resize(ds.x_test[:num_images], h, w, c))
    labels = ds.y_test[:num_images]
    names = list(class_names or (ds.class_names if len(ds.class_names) == num_classes
                                 else [str(i) for i in range(num_classes)]))

    with atomic_dir(out, force=force) as tmp:
        src = tmp / "src"
        kernels = _copy_kernels(src / "mcuformer")
        model_cc = (model_dir / "model_data.cc").read_text().replace('"model_data.h"', f'"{name}_model_data.h"')
        (src / f"{name}_model_data.h").write_text((model_dir / "model_data.h").read_text())
        (src / f"{name}_model_data.cpp").write_text(model_cc)
        values = dict(NAME=name, HEIGHT=h, WIDTH=w, CHANNELS=c, NUM_CLASSES=num_classes, ARENA=arena,
                      MODEL_ARRAY=array_sym, MODEL_LEN=length_sym, MODEL_CRC=crc_sym,
                      CLASS_NAMES=", ".join(json.dumps(n) for n in names))
        (src / f"{name}.h").write_text(_fill("Classifier.h.in", **values))
        (src / f"{name}.cpp").write_text(_fill("Classifier.cpp.in", **values))
        (tmp / "library.properties").write_text(_fill("library.properties.in", **values))
        example = tmp / "examples" / f"{name}Classify"
        example.mkdir(parents=True)
        (example / f"{name}Classify.ino").write_text(_fill("Classify.ino.in", **values))
        (example / "sample_images.h").write_text(_fill(
            "sample_images.h.in", NUM_IMAGES=len(images), IMAGE_BYTES=h * w * c,
            LABELS=", ".join(str(int(l)) for l in labels),
            IMAGES=",\n".join("  {\n" + _c_array(img.reshape(-1)) + "\n  }" for img in images)))
        (tmp / "README.md").write_text(_fill("README.md.in", **values, KERNELS=", ".join(kernels)))
    return out


CORTEX_M7_FLAGS = ["-mcpu=cortex-m7", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-mthumb", "-std=c++17",
                   "-Os", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-Wall",
                   "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_MCU_DEBUG_LOG", "-DCMSIS_NN", "-DARDUINO=10819"]


def tflm_arduino_tree(tflm_root: Path) -> Path:
    """TFLM's own source tree for Cortex-M7 + CMSIS-NN, as its Arduino library
    is made (create_tflm_tree.py --rename_cc_to_cpp); generated once, cached."""
    import shutil
    import subprocess
    import sys

    from .tflm import cache_dir, tree_commit
    from .tflm_make import project_python_env

    tree = cache_dir() / f"tflm_tree_cortex_m7_cmsis_nn_{tree_commit(tflm_root)[:9]}"
    if (tree / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").exists():
        return tree
    script = tflm_root / "tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py"
    tmp = tree.with_name(tree.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    options = ("TARGET=cortex_m_generic TARGET_ARCH=cortex-m7+fp OPTIMIZED_KERNEL_DIR=cmsis_nn "
               "TARGET_TOOLCHAIN_ROOT=/usr/bin/")
    proc = subprocess.run([sys.executable, str(script), "--rename_cc_to_cpp", f"--makefile_options={options}",
                           str(tmp)], cwd=tflm_root, capture_output=True, text=True, env=project_python_env())
    if proc.returncode != 0:
        raise UserError(f"generating the TFLM Arduino tree failed: {proc.stderr.strip().splitlines()[-1:]}")
    tmp.rename(tree)
    return tree


def compile_check(lib_dir: Path, tree: Path, work: Path) -> list:
    """Compile every .cpp of the library and its examples for Cortex-M7
    (arm-none-eabi-g++ -c) against a TFLM tree; return the object files."""
    import shutil
    import subprocess

    gxx = shutil.which("arm-none-eabi-g++")
    if not gxx:
        raise UserError("arm-none-eabi-g++ not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")
    includes = [lib_dir / "src", TEMPLATES / "shim", tree]
    third = tree / "third_party"
    includes += [third / "flatbuffers" / "include", third / "gemmlowp", third / "ruy", third / "kissfft",
                 third / "cmsis_nn", third / "cmsis_nn" / "Include", third / "cmsis" / "CMSIS" / "Core" / "Include"]
    includes = [p for p in includes if p.exists()]
    work.mkdir(parents=True, exist_ok=True)
    units = sorted((lib_dir / "src").rglob("*.cpp"))
    for ino in sorted((lib_dir / "examples").rglob("*.ino")):
        unit = work / (ino.stem + ".ino.cpp")          # as the Arduino IDE does
        unit.write_text(f'#include <Arduino.h>\n#line 1 "{ino.name}"\n' + ino.read_text())
        units.append(unit)
        includes.append(ino.parent)
    objects = []
    for unit in units:
        obj = work / (unit.stem + ".o")
        cmd = [gxx, *CORTEX_M7_FLAGS, *[f"-I{p}" for p in includes], "-c", str(unit), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"{unit.name} does not compile for Cortex-M7:\n{proc.stderr[-2000:]}")
        objects.append(obj)
    return objects
