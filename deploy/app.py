"""The example app (examples/image_classification) built for a platform.

Platforms: `host` (linux x86_64), `qemu-m7` (the QEMU `mps2-an500` twin of a
Cortex-M7 board: same sources, semihosting output, its memory map), `qemu-m7-ext`
(the same twin for a model in external flash: the model array in PSRAM at
0x60000000, code in SSRAM1) and a board (`stm32f746`, `stm32f746g-disco`,
`stm32h743i-eval`: ITM output, DWT cycles, the board's linker script).
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import write_text
from common.errors import UserError

from . import tflm_make

EXAMPLE_DIR = tflm_make.PROJECT_ROOT / "examples" / "image_classification"
PLATFORM_DIR = tflm_make.MAKE_DIR / "platform"
LINKER_SCRIPTS = {"qemu-m7": "mps2_an500.ld", "qemu-m7-ext": "mps2_an500_ext.ld", "stm32f746": "stm32f746.ld",
                  "stm32f746g-disco": "stm32f746g_disco.ld", "stm32h743i-eval": "stm32h743i_eval.ld"}
# stm32f746.cc touches only Cortex-M7 core peripherals (caches, DWT, ITM), so the H743 uses it too
PLATFORM_SOURCES = {"host": "host.cc", "qemu-m7": "semihosting.cc", "qemu-m7-ext": "semihosting.cc",
                    "stm32f746": "stm32f746.cc", "stm32f746g-disco": "stm32f746.cc",
                    "stm32h743i-eval": "stm32f746.cc"}
MODEL_CRC_SYMBOL = "mcuformer_model_data_crc32"


@dataclass(frozen=True)
class AppSpec:
    model_array_cc: Path        # model_data.cc (the converter's, or one written for a .tflite)
    arena_bytes: int            # static arena size (16-byte aligned start); arena_size() for a model
    images: np.ndarray          # int8 [N, ...] embedded test images
    labels: np.ndarray          # [N]
    with_builtins: bool = False  # also register builtin ops (builtin-op baselines)
    model_section: str | None = None   # a named section for the model array (external flash), else .rodata


def arena_size(required_bytes: int) -> int:
    """The static arena for a model: its required arena (report.json `required_arena_bytes`,
    the smallest arena TFLM's AllocateTensors succeeds with) rounded up to 16, which is
    also the smallest multiple of 16 that works."""
    return (int(required_bytes) + 15) // 16 * 16


def _int_rows(values, per_line: int = 28) -> str:
    items = [str(int(v)) for v in np.ravel(values)]
    return ",\n".join("    " + ", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))


def _test_images_cc(images: np.ndarray, labels: np.ndarray) -> str:
    images = np.ascontiguousarray(images, np.int8).reshape(len(images), -1)
    return (f'#include "test_images.h"\n\n'
            f"const int kNumTestImages = {len(images)};\n"
            f"const int kTestImageBytes = {images.shape[1]};\n"
            f"alignas(16) const int8_t g_test_images[] = {{\n{_int_rows(images)}\n}};\n"
            f"const int8_t g_test_labels[] = {{\n{_int_rows(labels)}\n}};\n")


def model_array_cc(tflite_path: Path, dest_dir: Path) -> Path:
    """model_data.cc/.h, as the converter writes them, for a .tflite that has none
    (the builtin-op baseline)."""
    from converter.convert import c_array

    header, body = c_array(Path(tflite_path).read_bytes())
    write_text(dest_dir / "model_data.h", header)
    return write_text(dest_dir / "model_data.cc", body)


def target_for(platform: str, board=None) -> tflm_make.Target:
    if platform == "host":
        return tflm_make.HOST
    if board is not None and board.target_arch:
        return tflm_make.cortex_m_target(board.target_arch, board.fpu)
    return tflm_make.cortex_m_target()


def _write_if_changed(path: Path, text: str) -> Path:
    """Keeps the file (and its mtime, so make skips it) when the text is the same."""
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
    return path


def build_app(root: Path, platform: str, spec: AppSpec, out: Path, board=None) -> Path:
    """Build the example app for `platform`; the program is written to `out`.

    Model-specific code (model_data.cc, test_images.cc, arena.cc) is generated
    into one folder per platform, so the app's other objects are reused across models.
    """
    if platform not in PLATFORM_SOURCES:
        raise UserError(f"unknown platform {platform!r}; one of {', '.join(PLATFORM_SOURCES)}")
    if spec.arena_bytes < 1:
        raise UserError(f"arena of {spec.arena_bytes} B: give at least the model's required_arena_bytes")
    out = Path(out).absolute()          # make runs inside the TFLM tree
    target = target_for(platform, board)
    name = f"image_classification-{platform}" + ("-builtins" if spec.with_builtins else "")
    gen_dir = tflm_make.build_root(root) / "mcuformer" / target.key / "gen" / name
    model_cc = Path(spec.model_array_cc)
    sources = [EXAMPLE_DIR / "main.cc", tflm_make.RUNNER_DIR / "op_resolver.cc", tflm_make.RUNNER_DIR / "model_crc.cc",
               PLATFORM_DIR / PLATFORM_SOURCES[platform], PLATFORM_DIR / "markers.c"]
    ldflags = []
    if target.cross:
        sources.append(tflm_make.MAKE_DIR / "startup_cortex_m.c")
        ldflags = [f"-L{tflm_make.MAKE_DIR}", f"-T{LINKER_SCRIPTS[platform]}", "-nostartfiles",
                   "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
                   f"-Wl,-Map={out.with_suffix('.map')}"]
    cppflags = [f"-I{EXAMPLE_DIR}", f"-I{gen_dir}"] + (["-DMCUF_WITH_BUILTINS"] if spec.with_builtins else [])
    header = (model_cc.parent / "model_data.h").read_text()
    if MODEL_CRC_SYMBOL not in header:      # main.cc checks the model against it before running it
        raise UserError(f"{model_cc.parent / 'model_data.h'} declares no {MODEL_CRC_SYMBOL} (converted before "
                        f"models carried a CRC-32); convert the model again")
    with tflm_make.target_lock(root, target):
        _write_if_changed(gen_dir / "model_data.h", header)
        sources += [
            _write_if_changed(gen_dir / "model_data.cc", in_section(model_cc.read_text(), spec.model_section)),
            _write_if_changed(gen_dir / "test_images.cc", _test_images_cc(spec.images, spec.labels)),
            _write_if_changed(gen_dir / "arena.cc", _ARENA_CC.format(bytes=spec.arena_bytes)),
        ]
        try:
            return tflm_make.build_program(root, target, name, app_sources=sources, cppflags=cppflags,
                                       ldflags=ldflags, out=out)
        except UserError as exc:
            overflow = re.search(r"region `(\w+)' overflowed by (\d+) bytes", str(exc))
            if overflow:
                raise UserError(f"the app does not fit {platform}: region {overflow.group(1)} overflowed by "
                                f"{overflow.group(2)} bytes (arena {spec.arena_bytes} B)") from None
            raise


_MODEL_ARRAY = re.compile(r"^(alignas\(16\) const unsigned char \w+\[\])( = \{)$", re.M)


def in_section(model_cc: str, section: str | None) -> str:
    """model_data.cc's text with its model array placed in `section` (None: unchanged, .rodata)."""
    if section is None:
        return model_cc
    placed, count = _MODEL_ARRAY.subn(rf'\1 __attribute__((section("{section}")))\2', model_cc)
    if count != 1:
        raise UserError("model_data.cc does not declare its model array as `mcuformer convert` writes it; "
                        "convert the model again")
    return placed


_ARENA_CC = """#include <stddef.h>
#include <stdint.h>

// The TFLM arena, 16-byte aligned (`mcuformer build`: the model's required_arena_bytes rounded up to 16).
alignas(16) uint8_t g_arena[{bytes}];
extern const size_t g_arena_bytes = {bytes};
"""


def _size(*args) -> str:
    proc = subprocess.run(["arm-none-eabi-size", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"arm-none-eabi-size failed on {args[-1]}: {proc.stderr.strip()}")
    return proc.stdout


def section_table(elf: Path) -> dict:
    """{section: (bytes, address)} of an ARM ELF (arm-none-eabi-size -A)."""
    table = {}
    for line in _size("-A", elf).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            table[parts[0]] = (int(parts[1]), int(parts[2]))
    return table


def section_sizes(elf: Path, external_section: str | None = None) -> dict:
    """.text/.data/.bss of an ARM ELF (arm-none-eabi-size, Berkeley format); with `external_section`,
    the bytes and address of that section (the model in external flash) and the internal flash
    (.text + .data less that section, which Berkeley counts in .text)."""
    text, data, bss = (int(v) for v in _size(elf).splitlines()[1].split()[:3])
    out = {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}
    if external_section:
        size, address = section_table(elf).get(external_section, (0, None))
        out.update(external_flash=size, external_address=address, internal_flash=text + data - size)
    return out


@dataclass
class AppOutput:
    outputs: np.ndarray         # int8 [N, K] scores, as printed
    labels: np.ndarray          # predicted labels
    expected: np.ndarray        # embedded labels
    arena_used_bytes: int
    cycles: list | None         # DWT cycles per Invoke (a real board only)


_IMAGE_LINE = re.compile(r"^image (\d+) label (-?\d+) expected (-?\d+) scores((?: -?\d+)+)(?: cycles (\d+))?$")


def parse_output(text: str) -> AppOutput:
    """The example app's printout -> numbers (see examples/image_classification/main.cc)."""
    rows, labels, expected, cycles = [], [], [], []
    arena = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("error:") or line.startswith("fault:"):
            raise UserError(f"the example app stopped: {line.split(':', 1)[1].strip()}")
        match = _IMAGE_LINE.match(line)
        if match:
            labels.append(int(match.group(2)))
            expected.append(int(match.group(3)))
            rows.append([int(v) for v in match.group(4).split()])
            if match.group(5):
                cycles.append(int(match.group(5)))
        elif line.startswith("arena_used_bytes "):
            arena = int(line.split()[1])
    if arena is None or not rows:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise UserError(f"the example app did not finish (last output: {tail or 'none'})")
    return AppOutput(np.asarray(rows, np.int8), np.asarray(labels), np.asarray(expected), arena,
                     cycles or None)
