"""A converted model folder (`mcuformer convert --out MODEL_DIR`), read for deployment."""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError
from converter import tflite_checks
from tflm_ops.contract import quantize_input

NEEDED = ("model.tflite", "model_data.cc", "model_data.h", "report.json")


@dataclass
class ModelDir:
    path: Path
    report: dict
    input_shape: tuple      # (H, W, C)
    num_classes: int

    @property
    def tflite(self) -> Path:
        return self.path / "model.tflite"

    @property
    def model_data_cc(self) -> Path:
        return self.path / "model_data.cc"

    @property
    def planned_arena_bytes(self) -> int:
        """The 32-bit (Cortex-M) arena_used_bytes() after AllocateTensors."""
        return int(self.report["planned_arena_bytes"])

    def _arena(self, key: str) -> int:
        if not isinstance(self.report.get(key), int):
            raise UserError(f"{self.path / 'report.json'} has no {key}; convert the model again")
        return self.report[key]

    @property
    def planned_arena_bytes_host(self) -> int:
        """The x86_64 host build's arena_used_bytes()."""
        return self._arena("planned_arena_bytes_host")

    @property
    def required_arena_bytes(self) -> int:
        """The smallest 32-bit (Cortex-M) arena AllocateTensors succeeds with: the one to allocate."""
        return self._arena("required_arena_bytes")

    @property
    def required_arena_bytes_host(self) -> int:
        """The same for the x86_64 host build (pointer-sized structs are larger)."""
        return self._arena("required_arena_bytes_host")

    @property
    def flash_bytes(self) -> int:
        """The model flatbuffer (weights included), which stays in flash."""
        return self.tflite.stat().st_size

    @property
    def crc32(self) -> int:
        """The converter's CRC-32 of model.tflite (checked when the folder was read)."""
        return int(next(iter(recorded_crc32(self.path, self.report).values())), 16)


def tflite_io(path: Path) -> tuple:
    """(input shape HWC, number of classes) read from a .tflite's first subgraph."""
    # the tflite-micro wheel's copy of the schema: no TensorFlow import
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    try:
        graph = schema.Model.GetRootAs(Path(path).read_bytes(), 0).Subgraphs(0)
        image = graph.Tensors(graph.Inputs(0)).ShapeAsNumpy().tolist()
        logits = graph.Tensors(graph.Outputs(0)).ShapeAsNumpy().tolist()
    except Exception:  # a corrupt flatbuffer fails in many ways
        raise UserError(f"{path} is not a valid .tflite model; convert the model again") from None
    if len(image) != 4 or len(logits) != 2:
        raise UserError(f"{path}: expected an image input [1,H,W,C] and logits [1,K], got {image} and {logits}")
    return tuple(image[1:]), int(logits[1])


def recorded_crc32(path: Path, report: dict) -> dict:
    """The CRC-32s of model.tflite the converter recorded, by file: report.json's model_crc32 and
    model_data.cc's constant (its last line)."""
    with open(path / "model_data.cc", "rb") as cc:
        cc.seek(max(0, cc.seek(0, 2) - 256))
        in_cc = re.search(rb"_crc32 = (0x[0-9a-f]{8})u;", cc.read())
    found = {"report.json": report.get("model_crc32"), "model_data.cc": in_cc and in_cc.group(1).decode()}
    return {name: value for name, value in found.items()
            if isinstance(value, str) and re.fullmatch(r"0x[0-9a-f]{8}", value)}


def check_integrity(path: Path, report: dict) -> None:
    """model.tflite has the CRC-32 the converter recorded and passes the structural checks."""
    recorded = recorded_crc32(path, report)
    if not recorded:
        raise UserError(f"{path} records no CRC-32 of its model (converted before models carried one); "
                        f"convert the model again")
    if len(set(recorded.values())) > 1:
        raise UserError(f"{path}: report.json and model_data.cc record different CRC-32s "
                        f"({', '.join(recorded.values())}); convert the model again")
    tflite = path / "model.tflite"
    data = tflite.read_bytes()
    actual, (where, expected) = f"0x{zlib.crc32(data):08x}", next(iter(recorded.items()))
    if actual != expected:
        raise UserError(f"{tflite}: CRC-32 {actual} does not match the converter's {expected} in {where} "
                        f"(the model was damaged or changed after `mcuformer convert`); convert it again")
    try:
        tflite_checks.check_structure(data)
    except tflite_checks.TfliteCheckError as exc:
        raise UserError(f"{tflite} is not a model TFLM can run safely: {exc}; convert it again") from None


def read_model_dir(path) -> ModelDir:
    path = Path(path).absolute()
    missing = [name for name in NEEDED if not (path / name).is_file()]
    if missing:
        raise UserError(f"{path} is not a converted model folder (missing {', '.join(missing)}); "
                        f"run `mcuformer convert SUBNET --out {path}` first")
    try:
        report = json.loads((path / "report.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path / 'report.json'} is not valid JSON; convert the model again") from None
    if not isinstance(report, dict):
        raise UserError(f"{path / 'report.json'} is not a convert report (a JSON object); convert the model again")
    if not isinstance(report.get("planned_arena_bytes"), int):
        raise UserError(f"{path / 'report.json'} has no planned_arena_bytes; convert the model again")
    check_integrity(path, report)
    shape, classes = tflite_io(path / "model.tflite")
    return ModelDir(path, report, shape, classes)


def test_images(source: str, count: int, input_shape: tuple):
    """(int8 images [N, H, W, C] = pixel - 128, labels) from the data set's test split,
    resized to the model's input as every command does (`datasets.resize`)."""
    import numpy as np

    from common import datasets

    data = datasets.load(source)
    if count < 1 or count > len(data.x_test):
        raise UserError(f"--images must be between 1 and {len(data.x_test)}")
    height, width, channels = input_shape
    images = datasets.resize(data.x_test[:count], height, width, channels)
    return quantize_input(images), np.asarray(data.y_test[:count])
