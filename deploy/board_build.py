"""`mcuformer build`: the example app for a board, its QEMU twin and the host.

Budgets are checked before anything compiles: the static arena (the memory
model's 32-bit required arena, rounded up to 16) against the board's SRAM, and
code + model against its flash regions (memory_model/flash_split.py: the model
array goes to the board's external flash when it does not fit internal flash,
or on request; the build then places it in `.mcuformer_ext_weights`, which
the board's linker script maps to its QSPI window and the QEMU twin to PSRAM).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.atomic import atomic_dir, write_json
from common.errors import UserError
from converter.interpreter import check_tflite
from memory_model.flash_split import EXTERNAL_SECTION, split_flash
from memory_model.memory import CODE_FLASH_BYTES

from . import app, host, qemu, tflm
from .model_dir import ModelDir, read_model_dir, test_images

QEMU_MACHINES = {"cortex-m7": ("qemu-m7", "mps2-an500")}


def flash_split(model: ModelDir, board, weights_in: str = "auto"):
    """Where the model goes on `board` (memory_model.flash_split.FlashSplit); UserError for an impossible request."""
    external = board.external_flash.size if board.external_flash else 0
    if weights_in == "external" and not external:
        raise UserError(f"--weights-in external: board {board.name} has no external flash "
                        f"(boards with one: stm32f746g-disco, stm32h743i-eval)")
    return split_flash(model.flash_bytes, CODE_FLASH_BYTES, board.flash, external, weights_in)


def check_budget(model: ModelDir, board, weights_in: str = "auto") -> tuple:
    """(the board's static arena (app.arena_size), the flash split); UserError with the numbers when the
    arena or the model does not fit."""
    arena = app.arena_size(model.required_arena_bytes)
    if arena > board.sram:
        raise UserError(f"the model's arena ({model.required_arena_bytes} B required, a {arena} B array) exceeds "
                        f"{board.name}'s SRAM ({board.sram} B); "
                        f"search again under this board's budget")
    split = flash_split(model, board, weights_in)
    if split.weights_in == "internal" and model.flash_bytes > board.flash:
        raise UserError(f"the model's weights ({model.flash_bytes} B flatbuffer) exceed {board.name}'s flash "
                        f"({board.flash} B); search again under this board's budget"
                        + ("" if board.external_flash else " or use a board with external flash"))
    if split.external_bytes > split.external_capacity:
        raise UserError(f"the model's weights ({model.flash_bytes} B flatbuffer) exceed {board.name}'s external "
                        f"flash ({split.external_capacity} B); search again under this board's budget")
    return arena, split


def build_for_board(model_dir, board, out=None, images: int = 4, data: str = "fashion_mnist",
                    run_host: bool = False, run_qemu: bool = False, weights_in: str = "auto") -> dict:
    """Build (and optionally run) the app; writes OUT/build.json and returns it."""
    model = read_model_dir(model_dir)
    arena, split = check_budget(model, board, weights_in)
    external = split.weights_in == "external"
    if board.name not in app.LINKER_SCRIPTS:
        boards = ", ".join(sorted(n for n in app.LINKER_SCRIPTS if not n.startswith("qemu")))
        raise UserError(f"no startup/linker support for board {board.name} yet (supported: {boards}); "
                        f"add deploy/make/{board.name}.ld and a platform file")
    app.target_for(board.name, board)           # names the apt packages when the toolchain is missing
    check_tflite(model.tflite)                  # one line for what the kernels' Prepare rejects, before compiling
    out = Path(out) if out else model.path / "build" / board.name
    x, y = test_images(data, images, model.input_shape)
    root = tflm.ensure_tflm()
    spec = app.AppSpec(model.model_data_cc, arena, x, y, model_section=EXTERNAL_SECTION if external else None)
    twin = QEMU_MACHINES.get(board.core)
    result = {"board": board.name, "model_dir": str(model.path), "planned_arena_bytes": model.planned_arena_bytes,
              "required_arena_bytes": model.required_arena_bytes, "arena_bytes": arena,
              "board_sram_bytes": board.sram, "board_flash_bytes": board.flash,
              "board_external_flash": board.external_flash.to_dict() if board.external_flash else None,
              "model_flash_bytes": model.flash_bytes, "flash_split_predicted": split.to_dict(), "images": images}
    section = EXTERNAL_SECTION if board.external_flash else None
    with atomic_dir(out, force=True) as tmp:
        elf = app.build_app(root, board.name, spec, tmp / f"app_{board.name}.elf", board=board)
        result["sections"] = app.section_sizes(elf, section)
        result["elf"] = str(out / elf.name)
        if twin:
            platform, machine = twin
            platform += "-ext" if external else ""
            twin_elf = app.build_app(root, platform, spec, tmp / "app_qemu.elf", board=board)
            result["qemu_elf"] = str(out / twin_elf.name)
            result["qemu_sections"] = app.section_sizes(twin_elf, section)
            if run_qemu:
                output, instructions = qemu.run_qemu(twin_elf, machine)
                result["qemu"] = _summary(output.outputs, y, output.arena_used_bytes, machine=machine,
                                          instructions_per_inference=instructions)
        elif run_qemu:
            result["qemu"] = {"skipped": f"no QEMU twin for a {board.core} board (only cortex-m7: mps2-an500)"}
        if run_host:
            # x86_64 TFLM structs are larger: the host app gets the 64-bit required arena
            host_arena = app.arena_size(model.required_arena_bytes_host)
            host_elf = app.build_app(root, "host", app.AppSpec(model.model_data_cc, host_arena, x, y), tmp / "app_host")
            result["host_app"] = str(out / host_elf.name)
            on_host = host.run_host(root, model.tflite, x, arena_bytes=host_arena, crc32=model.crc32)
            result["host"] = _summary(on_host.outputs, y, on_host.arena_used_bytes)
        if "qemu" in result and "host" in result and "outputs" in result["qemu"]:
            result["qemu_equals_host"] = result["qemu"]["outputs"] == result["host"]["outputs"]
        write_json(tmp / "build.json", result)
    return result


def _summary(outputs, labels, arena_used_bytes, **extra) -> dict:
    outputs = np.asarray(outputs, np.int8)
    return {"arena_used_bytes": int(arena_used_bytes),
            "accuracy": float(np.mean(outputs.argmax(axis=1) == labels)),
            "outputs": outputs.tolist(), **extra}
