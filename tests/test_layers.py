"""Every import between the project's packages points down the layers.

The layer order is written here once: a package may import packages of a lower
rank only (same-rank packages are independent of each other). Imports inside
functions count too. benchmarks/ and tests/ stand on top and may import all.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS = [
    ["common"],                       # errors, units, atomic output, config files, datasets, boards
    ["tflm_ops"],                     # the op contract (SPEC.md, reference) and the C++ kernels
    ["memory_model", "keras_supernet"],
    ["converter", "search"],
    ["deploy"],                       # TFLM builds, example app, host/QEMU runs, verify, packages
    ["mcuformer"],                    # the CLI and the demo
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}

def imported_packages(path: Path) -> set:
    """Top-level project packages a module imports (absolute imports; relative ones stay inside its package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & RANK.keys()
    return found

def upward_imports(root: Path) -> list:
    wrong = []
    for package, rank in RANK.items():
        for path in sorted((root / package).rglob("*.py")):
            for target in imported_packages(path) - {package}:
                if RANK[target] >= rank:
                    wrong.append(f"{path.relative_to(root)} imports {target} (rank {RANK[target]} >= {rank})")
    return wrong

def test_every_package_is_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert packages == set(RANK), "add the new package to LAYERS"

def test_imports_only_point_down():
    assert upward_imports(ROOT) == []

def test_an_upward_import_is_caught(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "units.py").write_text("def f():\n    from deploy.app import arena_size\n")
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "budget.py").write_text("from converter import quantize\nfrom . import memory\n")
    assert upward_imports(tmp_path) == ["common/units.py imports deploy (rank 4 >= 0)",
                                        "search/budget.py imports converter (rank 3 >= 3)"]
