"""`mcuformer build` with the model in a board's external flash: the split decided before compiling,
the model array in `.mcuformer_ext_weights` at the QSPI base (the board's ELF) and at PSRAM
0x60000000 (the QEMU twin), and the twin running it bit-exact with the arena of the plan."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from tests import test_build
from tests.tflm_fixtures import arm_or_skip, tflm_root_or_skip

converted = test_build.converted      # the small converted ViT (fixture)

QSPI_BASE, PSRAM_BASE = 0x9000_0000, 0x6000_0000


def test_external_weights_on_a_board_without_external_flash_is_one_line(converted):
    proc = run_cli("build", str(converted), "--board", "stm32f746", "--weights-in", "external")
    assert_one_line_error(proc, "stm32f746 has no external flash")


def test_the_split_goes_external_only_when_internal_flash_is_short(converted, tmp_path):
    from common.boards import load_board
    from deploy.board_build import check_budget
    from deploy.model_dir import read_model_dir
    from memory_model.memory import CODE_FLASH_BYTES

    model = read_model_dir(converted)
    size = (converted / "model.tflite").stat().st_size
    board = tmp_path / "b.yaml"
    text = "name: b\ncore: cortex-m7\nsram: 320KiB\nflash: {flash}\nexternal_flash: {{size: 1MiB, base: 0x90000000}}\n"
    board.write_text(text.format(flash=CODE_FLASH_BYTES + size))          # code + model fit exactly
    _, split = check_budget(model, load_board(str(board)))
    assert (split.weights_in, split.internal_bytes, split.external_bytes) == ("internal", CODE_FLASH_BYTES + size, 0)
    board.write_text(text.format(flash=CODE_FLASH_BYTES + size - 1))      # one byte short: the model goes out
    _, split = check_budget(model, load_board(str(board)))
    assert (split.weights_in, split.internal_bytes, split.external_bytes) == ("external", CODE_FLASH_BYTES, size)


def test_the_model_array_is_placed_in_the_named_section(converted):
    from deploy.app import in_section

    text = (converted / "model_data.cc").read_text()
    assert in_section(text, None) == text
    placed = in_section(text, ".mcuformer_ext_weights")
    assert placed.count('__attribute__((section(".mcuformer_ext_weights")))') == 1
    assert placed.replace(' __attribute__((section(".mcuformer_ext_weights")))', "") == text


@pytest.mark.tflm
@pytest.mark.slow
def test_a_model_forced_into_qspi_runs_bit_exact_in_the_qemu_twin(converted, fashion_mnist):
    from converter.interpreter import run_tflite
    from deploy.app import section_table
    from deploy.model_dir import test_images

    tflm_root_or_skip()
    arm_or_skip()
    proc = run_cli("build", str(converted), "--board", "stm32f746g-disco", "--weights-in", "external", "--qemu",
                   "--images", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    flatbuffer = (converted / "model.tflite").stat().st_size
    out = converted / "build" / "stm32f746g-disco"
    # arm-none-eabi-size -A: the whole model array sits at the external base, nothing else there
    board_sections = section_table(out / "app_stm32f746g-disco.elf")
    twin_sections = section_table(out / "app_qemu.elf")
    assert board_sections[".mcuformer_ext_weights"] == (flatbuffer, QSPI_BASE)
    assert twin_sections[".mcuformer_ext_weights"] == (flatbuffer, PSRAM_BASE)
    sections = result["sections"]
    assert sections["external_flash"] == flatbuffer and sections["external_address"] == QSPI_BASE
    assert sections["internal_flash"] == sections["text"] + sections["data"] - flatbuffer
    assert sections["internal_flash"] < sections["text"]                      # the weights left .text
    assert result["flash_split_predicted"]["external_flash_bytes"] == flatbuffer
    # the twin runs it: outputs equal the reference's, arena_used equals the plan
    report = json.loads((converted / "report.json").read_text())
    images, _ = test_images("fashion_mnist", 3, (28, 28, 1))
    reference = np.asarray(run_tflite(converted / "model.tflite", images), np.int8)
    assert result["qemu"]["outputs"] == reference.tolist()
    assert result["qemu"]["arena_used_bytes"] == report["planned_arena_bytes"]


_TINY_PROGRAM = """
__attribute__((section(".mcuformer_ext_weights"), aligned(16))) const unsigned char g_model[64] = {1, 2, 3};
volatile int sink = 1;
void mcuf_platform_exit(int s) { (void)s; for (;;) {} }
void mcuf_platform_write(const char* s) { (void)s; }
int main(void) { return g_model[sink]; }
"""


@pytest.mark.parametrize("board_name", ["stm32f746g-disco", "stm32h743i-eval"])
def test_each_boards_linker_script_puts_the_section_at_its_profiles_base(board_name, tmp_path):
    """A tiny program with the startup code, linked with the board's script (the full app is built for
    stm32f746g-disco above): the section lands at the external base the board profile names."""
    import subprocess

    from common.boards import load_board
    from deploy import app, tflm_make
    from deploy.app import section_table

    arm_or_skip()
    board = load_board(board_name)
    (tmp_path / "tiny.c").write_text(_TINY_PROGRAM)
    elf = tmp_path / "tiny.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m7", "-mthumb", "-O1", f"-I{tflm_make.PROJECT_ROOT}",
                    f"-L{tflm_make.MAKE_DIR}", f"-T{app.LINKER_SCRIPTS[board_name]}", "-nostartfiles",
                    "--specs=nano.specs", "--specs=nosys.specs", str(tmp_path / "tiny.c"),
                    str(tflm_make.MAKE_DIR / "startup_cortex_m.c"), "-o", str(elf)], check=True)
    sections = section_table(elf)
    assert sections[".mcuformer_ext_weights"] == (64, board.external_flash.base)
    assert sections[".isr_vector"][1] == 0x0800_0000                 # boots from internal flash
