"""`mcuformer arduino-lib`: package a converted model as a self-contained Arduino library.

The library (Arduino library specification, 1.5 format) needs nothing else:
TFLM itself comes with it, pruned to what the model links, in src/ beside the
model, the project's kernels and the `Classifier` API (deploy/package_sources.py);
src/ is its only include path. The same folder is a PlatformIO library (library.json):

    library.properties, library.json, keywords.txt, README.md
    src/                                      the package sources (see package_sources.py)
    examples/<Name>Classify/<Name>Classify.ino, sample_images.h
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from common.atomic import atomic_dir

from .package_sources import fill, package_inputs, sample_images_h, tree_bytes, write_package_sources

VERSION = "0.1.0"
# The Arduino cores of Cortex-M4F / Cortex-M7 boards (nRF52840, nRF52832, STM32H747): the
# cores this library's tests compile for (arm-none-eabi-g++, M4 fpv4-sp-d16 and M7 fpv5-sp-d16).
ARCHITECTURES = ("mbed_nano", "mbed_nicla", "mbed_portenta", "mbed_giga")
# PlatformIO platforms of the same chips (nordicnrf52: Nano 33 BLE; ststm32: Portenta, GIGA).
PLATFORMS = ("nordicnrf52", "ststm32")
BUILD_FLAGS = ("-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_MCU_DEBUG_LOG", "-DCMSIS_NN")
KEYWORDS = (("Classifier", "KEYWORD1"), ("begin", "KEYWORD2"), ("predict", "KEYWORD2"),
            ("predictInt8", "KEYWORD2"), ("arenaUsedBytes", "KEYWORD2"), ("className", "KEYWORD2"),
            ("kArenaSize", "LITERAL1"), ("kNumClasses", "LITERAL1"), ("kImageBytes", "LITERAL1"))


def library_json(values: dict, example: str) -> dict:
    """PlatformIO's library.json for the library (docs.platformio.org, library.json)."""
    name = values["NAME"]
    return {
        "name": re.sub(r"_+", "-", name).strip("-"),      # PlatformIO: letters, digits, inner dashes
        "version": VERSION,
        "description": _sentence(values),
        "keywords": ["tflite-micro", "vision-transformer", "int8", "image-classification"],
        "authors": [{"name": "MCUFormer-TFLM", "maintainer": True}],
        "frameworks": ["arduino"],
        "platforms": list(PLATFORMS),
        "headers": f"{name}.h",
        "examples": [{"name": example, "base": f"examples/{example}", "files": [f"{example}.ino", "sample_images.h"]}],
        "build": {"flags": list(BUILD_FLAGS), "includeDir": "src", "srcDir": "src"},
    }


def _sentence(values: dict) -> str:
    return (f"An int8 vision transformer for {values['HEIGHT']}x{values['WIDTH']}x{values['CHANNELS']} images "
            f"({values['NUM_CLASSES']} classes), with TensorFlow Lite Micro included.")


def write_arduino_library(model_dir, out, name: str = "MCUFormerModel", data: str = "fashion_mnist",
                          num_images: int = 3, force: bool = False, class_names=None) -> Path:
    """Write the Arduino library for the converted model in `model_dir` to `out`."""
    from memory_model.memory import CODE_FLASH_BYTES

    values, images, labels = package_inputs(model_dir, name, data, num_images, class_names)
    example = f"{name}Classify"
    with atomic_dir(out, force=force) as tmp:        # a failure below leaves nothing
        sources = write_package_sources(model_dir, tmp / "src", values)
        readme = dict(values, KERNELS=", ".join(sources.kernels), TFLM_FILES=len(sources.tflm_files),
                      SRC_BYTES=tree_bytes(tmp / "src"), CODE_FLASH=CODE_FLASH_BYTES,
                      ARCHITECTURES=", ".join(ARCHITECTURES), EXAMPLE=example)
        (tmp / "library.properties").write_text(fill("library.properties.in", **values, VERSION=VERSION,
                                                     SENTENCE=_sentence(values), INCLUDES=f"{name}.h",
                                                     ARCHITECTURES=",".join(ARCHITECTURES)))
        (tmp / "library.json").write_text(json.dumps(library_json(values, example), indent=2) + "\n")
        (tmp / "keywords.txt").write_text("".join(f"{word}\t{kind}\n" for word, kind in KEYWORDS))
        ex_dir = tmp / "examples" / example
        ex_dir.mkdir(parents=True)
        (ex_dir / f"{example}.ino").write_text(fill("Classify.ino.in", **values))
        (ex_dir / "sample_images.h").write_text(sample_images_h(images, labels))
        (tmp / "README.md").write_text(fill("README.md.in", **readme))
    return Path(out)
