"""`mcuformer export-cmake`: a converted model as a CMake source package.

    CMakeLists.txt                 static library mcuformer_model, alias mcuformer::model
    src/                           the package sources (deploy/package_sources.py), the only include dir
    cmake/arm-none-eabi-cortex-m7.cmake   toolchain-file example (Cortex-M7, fpv5-sp-d16, hard float)
    examples/classify/             a host example program (printf) with embedded test images
    README.md
"""
from __future__ import annotations

from pathlib import Path

from common.atomic import atomic_dir

from .arduino_lib import VERSION
from .package_sources import fill, package_inputs, sample_images_h, write_package_sources

CMAKE_TEMPLATES = Path(__file__).resolve().parent / "cmake"
TOOLCHAIN_FILE = "arm-none-eabi-cortex-m7.cmake"


def write_cmake_package(model_dir, out, name: str = "MCUFormerModel", data: str = "fashion_mnist",
                        num_images: int = 10, force: bool = False, class_names=None) -> Path:
    """Write the CMake package for the converted model in `model_dir` to `out`."""
    values, images, labels = package_inputs(model_dir, name, data, num_images, class_names)
    with atomic_dir(out, force=force) as tmp:        # a failure below leaves nothing
        sources = write_package_sources(model_dir, tmp / "src", values)
        units = sorted(p.relative_to(tmp).as_posix() for p in (tmp / "src").rglob("*")
                       if p.suffix in (".cpp", ".c"))
        (tmp / "CMakeLists.txt").write_text(fill("CMakeLists.txt.in", CMAKE_TEMPLATES, NAME=name, VERSION=VERSION,
                                                        SOURCES="\n".join(f"  {u}" for u in units)))
        (tmp / "cmake").mkdir()
        (tmp / "cmake" / TOOLCHAIN_FILE).write_text((CMAKE_TEMPLATES / TOOLCHAIN_FILE).read_text())
        example = tmp / "examples" / "classify"
        example.mkdir(parents=True)
        (example / "main.cpp").write_text(fill("main.cpp.in", CMAKE_TEMPLATES, NAME=name))
        (example / "sample_images.h").write_text(sample_images_h(images, labels))
        (tmp / "README.md").write_text(fill("README.md.in", CMAKE_TEMPLATES, **values,
                                                TFLM_FILES=len(sources.tflm_files)))
    return Path(out)
