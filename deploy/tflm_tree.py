"""The TFLM source tree the deployment packages bundle (Arduino, PlatformIO, CMake).

TFLM's own `create_tflm_tree.py` makes it, for `cortex_m_generic` with
CMSIS-NN and `.cc` renamed `.cpp` (as TFLM's Arduino library was made), once
per TFLM commit, in the cache. `copy_pruned_tree()` copies into a package:

- only the TFLM sources a `Classifier` links (`LINKED_SOURCES`: the project
  registers its four custom ops and no builtin kernel, so no builtin kernel,
  test, example, signal or CMSIS-NN source is needed), and the headers those
  and the package's own sources include, transitively;
- with every `#include` of a bundled file rewritten relative to the package's
  source root, so that root is the only include path (TFLM's tree needs
  eight: flatbuffers, gemmlowp, ruy, CMSIS-NN, CMSIS Core ...).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from common.errors import UserError

# The include path TFLM's tree is compiled with, relative to the tree (its Makefile's INCLUDES).
TREE_INCLUDE_DIRS = ("", "third_party/flatbuffers/include", "third_party/gemmlowp", "third_party/ruy",
                     "third_party/kissfft", "third_party/cmsis_nn", "third_party/cmsis_nn/Include",
                     "third_party/cmsis/CMSIS/Core/Include")

# The archive members of TFLM's microlite that the linker pulls into a Classifier
# program (its link map, pinned commit); tests/test_arduino_lib.py links the pruned set.
LINKED_SOURCES = (
    "tensorflow/compiler/mlir/lite/core/api/error_reporter.cpp",
    "tensorflow/compiler/mlir/lite/schema/schema_utils.cpp",
    "tensorflow/lite/core/api/flatbuffer_conversions.cpp",
    "tensorflow/lite/core/c/common.cpp",
    "tensorflow/lite/kernels/internal/common.cpp",
    "tensorflow/lite/kernels/internal/portable_tensor_utils.cpp",
    "tensorflow/lite/kernels/internal/tensor_ctypes.cpp",
    "tensorflow/lite/kernels/kernel_util.cpp",
    "tensorflow/lite/micro/arena_allocator/non_persistent_arena_buffer_allocator.cpp",
    "tensorflow/lite/micro/arena_allocator/persistent_arena_buffer_allocator.cpp",
    "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.cpp",
    "tensorflow/lite/micro/cortex_m_generic/debug_log.cpp",
    "tensorflow/lite/micro/flatbuffer_utils.cpp",
    "tensorflow/lite/micro/kernels/kernel_util.cpp",
    "tensorflow/lite/micro/memory_helpers.cpp",
    "tensorflow/lite/micro/memory_planner/greedy_memory_planner.cpp",
    "tensorflow/lite/micro/memory_planner/linear_memory_planner.cpp",
    "tensorflow/lite/micro/micro_allocation_info.cpp",
    "tensorflow/lite/micro/micro_allocator.cpp",
    "tensorflow/lite/micro/micro_context.cpp",
    "tensorflow/lite/micro/micro_interpreter.cpp",
    "tensorflow/lite/micro/micro_interpreter_context.cpp",
    "tensorflow/lite/micro/micro_interpreter_graph.cpp",
    "tensorflow/lite/micro/micro_log.cpp",
    "tensorflow/lite/micro/micro_op_resolver.cpp",
    "tensorflow/lite/micro/micro_resource_variable.cpp",
    "tensorflow/lite/micro/micro_utils.cpp",
    "tensorflow/lite/micro/tflite_bridge/flatbuffer_conversions_bridge.cpp",
    "tensorflow/lite/micro/tflite_bridge/micro_error_reporter.cpp",
)
# Where TFLM's part of a package lives (what tflm_objects.py compiles once and caches).
TFLM_TOP_DIRS = ("tensorflow", "third_party", "signal")
LICENSE_FILES = ("LICENSE", "third_party/flatbuffers/LICENSE", "third_party/gemmlowp/LICENSE",
                 "third_party/cmsis/LICENSE", "third_party/cmsis_nn/LICENSE")
CONFIG_HEADER = "tflm_config.h"
# An Arduino library cannot pass -D flags, so its TFLM settings are a header every source includes first.
CONFIG_TEXT = """// The build settings of this package's TFLM: every .cpp/.c includes this first
// (an Arduino library cannot pass -D flags). A build may set them as -D too.
#ifndef TF_LITE_STATIC_MEMORY
#define TF_LITE_STATIC_MEMORY  // changes TFLM's struct layouts: every file must agree
#endif
#ifndef TF_LITE_MCU_DEBUG_LOG
#define TF_LITE_MCU_DEBUG_LOG
#endif
#if !defined(CMSIS_NN) && !defined(MCUFORMER_NO_CMSIS_NN) && defined(__ARM_FEATURE_DSP)
#define CMSIS_NN  // the kernels' inner loops use CMSIS-NN's SIMD helpers on Cortex-M with DSP
#endif
"""
_INCLUDE = re.compile(r'^(\s*#\s*include\s*)([<"])([^>"]+)([>"])', re.M)
_SOURCE_SUFFIXES = (".cpp", ".c")


def generated_tree(tflm_root: Path) -> Path:
    """TFLM's own tree for cortex_m_generic + CMSIS-NN (create_tflm_tree.py --rename_cc_to_cpp);
    generated once per TFLM commit, cached."""
    from .tflm import cache_dir, tree_commit
    from .tflm_make import project_python_env

    tree = cache_dir() / f"tflm_tree_cortex_m7_cmsis_nn_{tree_commit(tflm_root)[:9]}"
    if (tree / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").exists():
        return tree
    env = project_python_env()        # before anything is written: no interpreter, nothing written
    script = tflm_root / "tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py"
    tmp = tree.with_name(tree.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    options = ("TARGET=cortex_m_generic TARGET_ARCH=cortex-m7+fp OPTIMIZED_KERNEL_DIR=cmsis_nn "
               "TARGET_TOOLCHAIN_ROOT=/usr/bin/")
    proc = subprocess.run([sys.executable, str(script), "--rename_cc_to_cpp", f"--makefile_options={options}",
                           str(tmp)], cwd=tflm_root, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"generating the TFLM tree failed: {proc.stderr.strip().splitlines()[-1:]}")
    tmp.rename(tree)
    return tree


def package_tree() -> Path:
    """The generated tree of the pinned TFLM (`make tflm`); a UserError without one."""
    from .tflm import find_tflm, missing_reason

    root = find_tflm()
    if root is None:
        raise UserError(f"the package bundles TFLM, and there is {missing_reason()}")
    return generated_tree(root)


def _resolve(name: str, including: Path, root: Path, search: list) -> Path | None:
    for base in [including.parent, *search]:
        candidate = base / name
        if candidate.is_file() and root in candidate.resolve().parents:
            return candidate.resolve()
    return None


def _includes(path: Path, root: Path, search: list) -> list:
    """(the include's text span, the bundled file it names) for each include of a bundled file."""
    found = []
    for match in _INCLUDE.finditer(path.read_text(errors="replace")):
        target = _resolve(match.group(3), path, root, search)
        if target is not None:
            found.append((match, target))
    return found


def copy_pruned_tree(tree: Path, dest: Path, own_files: list) -> list:
    """Copy into `dest` the TFLM files `own_files` (already in `dest`) and LINKED_SOURCES need,
    then make every include in `dest` resolve from `dest` alone; returns the TFLM files copied."""
    tree, dest = tree.resolve(), dest.resolve()
    search = [tree / d for d in TREE_INCLUDE_DIRS]
    needed, queue = set(), [tree / s for s in LINKED_SOURCES]
    missing = [s for s in LINKED_SOURCES if not (tree / s).is_file()]
    if missing:
        raise UserError(f"the TFLM tree {tree} lacks {missing[0]}: it is not the pinned commit's; "
                        f"remove it and run again")
    for own in own_files:     # the package's own files include TFLM headers by their tree paths
        queue.extend(target for _, target in _includes_in_tree(own, search))
    while queue:
        path = queue.pop()
        if path in needed or tree not in path.parents:
            continue
        needed.add(path)
        queue.extend(target for _, target in _includes(path, tree, search))
    copied = []
    for path in sorted(needed) + [tree / f for f in LICENSE_FILES if (tree / f).is_file()]:
        rel = path.relative_to(tree)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
        copied.append(rel)
    dest_search = [dest / d for d in TREE_INCLUDE_DIRS]
    for rel in copied:
        _rewrite_includes(dest / rel, dest, dest_search)
    for own in own_files:
        _rewrite_includes(own, dest, dest_search)
    (dest / CONFIG_HEADER).write_text(CONFIG_TEXT)
    for path in [dest / rel for rel in copied] + list(own_files):
        if path.suffix in _SOURCE_SUFFIXES:
            path.write_text(f'#include "{CONFIG_HEADER}"\n' + path.read_text())
    return copied


def _includes_in_tree(own: Path, search: list) -> list:
    found = []
    for match in _INCLUDE.finditer(own.read_text()):
        for base in search:
            if (base / match.group(3)).is_file():
                found.append((match, (base / match.group(3)).resolve()))
                break
    return found


def _rewrite_includes(path: Path, root: Path, search: list) -> None:
    text = path.read_text(errors="replace")

    def relative(match):
        target = _resolve(match.group(3), path, root, search)
        if target is None or (path.parent / match.group(3)).is_file():    # beside the file: found as is
            return match.group(0)
        return f'{match.group(1)}"{target.relative_to(root).as_posix()}"'

    new = _INCLUDE.sub(relative, text)
    if new != text:
        path.write_text(new)


def is_tflm_file(rel: Path) -> bool:
    return Path(rel).parts[0] in TFLM_TOP_DIRS
