"""`mcuformer demo`: the whole pipeline, each stage the same code as its CLI command.

train-supernet -> search (under the SRAM/flash budget) -> finetune the winner ->
convert (int8, custom ops, offline memory plan, activation ranges chosen on the
validation split) -> verify (Python reference,
TFLM on the host, TFLM on an emulated Cortex-M7 where present) -> summary.json.

Every stage records completion in OUT/demo_state.json; running the demo again
skips finished stages and resumes an interrupted one (training resumes from its
last epoch checkpoint, search from its last generation).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import atomic
from common.errors import UserError

SPACES = Path(__file__).resolve().parent.parent / "configs" / "spaces"
STATE_FILE = "demo_state.json"
# A real 64 KiB SRAM / 256 KiB flash class MCU, with a latency cap: at most 1.8 M MACs
# per image excludes about a quarter of the demo space (its deepest, widest subnets) and
# bounds the fine-tuning time of whichever subnet wins.
DEFAULT_BOARD = "stm32l432kc"
DEFAULT_MAX_MACS = 1_800_000


@dataclass(frozen=True)
class DemoSettings:
    space: str                  # configs/spaces/<space>.yaml
    supernet_epochs: int
    supernet_train_limit: int   # 0 = the whole training split
    supernet_sampling: str
    supernet_lr: float
    val_limit: int              # validation images for search fitness and for keeping the best fine-tune epoch
    population: int
    generations: int
    parents: int
    mutations: int
    crossovers: int
    finetune_epochs: int
    finetune_train_limit: int
    min_steps: int              # the step floor of both trainings
    calib: int
    eval_images: int            # test images for the float / int8 (numpy reference) accuracy
    verify_images: int


TINY = DemoSettings(space="fmnist_demo", supernet_epochs=1, supernet_train_limit=0, supernet_sampling="uniform",
                    supernet_lr=5e-3, val_limit=2000, population=16, generations=5, parents=4, mutations=6,
                    crossovers=6, finetune_epochs=16, finetune_train_limit=0, min_steps=0, calib=300,
                    eval_images=10000, verify_images=50)
FULL = DemoSettings(space="fmnist_demo", supernet_epochs=40, supernet_train_limit=0, supernet_sampling="sandwich",
                    supernet_lr=2e-3, val_limit=0, population=50, generations=20, parents=10, mutations=25,
                    crossovers=25, finetune_epochs=40, finetune_train_limit=0, min_steps=0, calib=500,
                    eval_images=10000, verify_images=1000)


def _stage_args(out: Path, s: DemoSettings, budget: list, data: str, qemu: bool) -> list:
    """(stage name, mcuformer argv) in pipeline order."""
    supernet, search, subnet, model = out / "supernet", out / "search", out / "subnet.keras", out / "model"
    resume = ["--resume"] if (supernet / "run.json").exists() else []
    return [
        ("train-supernet", ["train-supernet", "--space", str(SPACES / f"{s.space}.yaml"), "--out", str(supernet),
                            "--data", data, "--epochs", str(s.supernet_epochs),
                            "--train-limit", str(s.supernet_train_limit), "--val-limit", str(s.val_limit),
                            "--sampling", s.supernet_sampling, "--lr", str(s.supernet_lr),
                            "--min-steps", str(s.min_steps), *resume]),
        ("search", ["search", "--supernet", str(supernet), "--out", str(search), "--data", data, *budget,
                    "--val-limit", str(s.val_limit), "--population", str(s.population),
                    "--generations", str(s.generations), "--parents", str(s.parents),
                    "--mutations", str(s.mutations), "--crossovers", str(s.crossovers)]),
        ("finetune", ["finetune", "--supernet", str(supernet), "--arch", str(search / "best_subnet.json"),
                      "--out", str(subnet), "--data", data, "--epochs", str(s.finetune_epochs),
                      "--train-limit", str(s.finetune_train_limit), "--val-limit", str(s.val_limit),
                      "--min-steps", str(s.min_steps), "--force"]),
        ("convert", ["convert", str(subnet), "--out", str(model), "--data", data, "--calib", str(s.calib),
                     "--range", "auto", "--val-limit", str(s.val_limit), "--eval", str(s.eval_images), "--force"]),
        ("verify", ["verify", str(model), "--images", str(s.verify_images), "--data", data, "--json",
                    *(["--qemu"] if qemu else [])]),
        *[(name, [name, str(model), "--out", str(out / folder), "--data", data, "--force"])
          for name, folder in PACKAGES.items() if _tflm_available()],
    ]


# The deployment packages the demo writes (they bundle TFLM, so only where its tree is).
PACKAGES = {"arduino-lib": "MCUFormerModel", "export-cmake": "MCUFormerModel-cmake"}


def _tflm_available() -> bool:
    from deploy.tflm import find_tflm

    return find_tflm() is not None


def _qemu_available() -> bool:
    return bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++") and _tflm_available())


def _run_stage(argv: list) -> object:
    """Run one `mcuformer` subcommand in-process; its UserError propagates."""
    import contextlib
    import io

    from .cli import build_parser

    args = build_parser().parse_args(argv)
    if argv[0] != "verify":
        return args._run(args)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        args._run(args)
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


def summarize(out: Path, verify_result: dict, budget: dict) -> dict:
    """summary.json: accuracy float/int8, SRAM/flash predicted and measured, the architecture."""
    report = json.loads((out / "model" / "report.json").read_text())
    best = json.loads((out / "search" / "best_subnet.json").read_text())
    from converter.range_choice import describe
    from keras_supernet.arch import ArchConfig

    arch = ArchConfig.from_dict(report["arch"])
    host, qemu = verify_result.get("host", {}), verify_result.get("qemu", {})
    summary = {
        "budget": budget,
        "architecture": {"config": report["arch"], "description": arch.describe(), "params": arch.params(),
                         "macs": arch.macs()},
        "accuracy": {"float": report.get("float_accuracy"), "int8": report.get("int8_accuracy"),
                     "test_images": report.get("accuracy", {}).get("test_images"),
                     "int8_measured_by": "numpy reference interpreter (converter/interpreter.py)",
                     "int8_ranges": describe(report.get("quantization", {})),
                     "supernet_inherited_val": best.get("accuracy"),
                     "int8_reference_on_verify_images": verify_result.get("int8_accuracy")},
        "sram": {"predicted_arena_bytes_cortex_m": report["planned_arena_bytes"],
                 "measured_arena_bytes_cortex_m": qemu.get("arena_used_bytes"),
                 "required_arena_bytes_cortex_m": report.get("required_arena_bytes"),
                 "predicted_arena_bytes_host": report.get("planned_arena_bytes_host"),
                 "measured_arena_bytes_host": host.get("arena_used_bytes"),
                 "required_arena_bytes_host": report.get("required_arena_bytes_host"),
                 "builtin_baseline_arena_bytes_host": report.get("baseline", {}).get("tflm_arena_bytes_host")},
        "flash": {"model_flatbuffer_bytes": report["flash_bytes"], "note": report.get("flash_note"),
                  "builtin_baseline_flatbuffer_bytes": report.get("baseline", {}).get("flash_bytes")},
        "instructions_per_inference_cortex_m7_qemu": qemu.get("instructions_per_inference"),
        "verification": {"images": verify_result.get("images"),
                         "mismatched_output_bytes": verify_result.get("mismatched_outputs"),
                         "host": host or None, "qemu": qemu or None},
        "pareto_png": "pareto.png",
    }
    return summary


def demo_budget(board: str | None = None, sram: str | None = None, flash: str | None = None,
                max_macs: int | None = None):
    """(Budget, the search's budget flags): the demo board and MAC cap unless a budget is given."""
    from search.budget import Budget

    if board is None and sram is None and flash is None:
        board = DEFAULT_BOARD
        max_macs = DEFAULT_MAX_MACS if max_macs is None else max_macs
    budget = Budget.from_args(board=board, sram=sram, flash=flash, max_macs=max_macs)
    return budget, [*(["--board", board] if board else []), *(["--sram", str(sram)] if sram else []),
                    *(["--flash", str(flash)] if flash else []),
                    *(["--max-macs", str(max_macs)] if max_macs is not None else [])]


def run_demo(out, full: bool = False, board: str | None = None, sram: str | None = None,
             flash: str | None = None, data: str = "fashion_mnist", qemu: bool | None = None,
             force: bool = False, settings: DemoSettings | None = None, max_macs: int | None = None) -> dict:
    budget, budget_args = demo_budget(board, sram, flash, max_macs)
    out = Path(out)
    if force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings or (FULL if full else TINY)
    use_qemu = _qemu_available() if qemu is None else qemu
    run_key = {"settings": asdict(settings), "budget": budget_args, "data": data}
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state and state.get("run") != run_key:
        raise UserError(f"{out} holds a demo run with other settings; pass another --out or --force")
    state = {"run": run_key, "done": state.get("done", {})}
    verify_result = state["done"].get("verify", {}).get("result")
    for name, argv in _stage_args(out, settings, budget_args, data, use_qemu):
        if name in state["done"]:
            print(f"[demo] {name}: done earlier, skipped")
            continue
        print(f"[demo] {name}: mcuformer {' '.join(argv)}", flush=True)
        started = time.time()
        result = _run_stage(argv)
        state["done"][name] = {"seconds": round(time.time() - started, 1)}
        if name == "verify":
            verify_result = result
            state["done"][name]["result"] = result
            if result.get("mismatched_outputs"):
                atomic.write_json(state_path, state)
                raise UserError(f"TFLM outputs differ from the Python reference in {result['mismatched_outputs']} "
                                f"bytes; see {out / 'model'} and run `mcuformer verify` for details")
        atomic.write_json(state_path, state)
    shutil.copyfile(out / "search" / "pareto.png", out / "pareto.png")
    summary = summarize(out, verify_result, budget.to_dict())
    summary["stage_seconds"] = {k: v["seconds"] for k, v in state["done"].items()}
    from deploy.package_sources import tree_bytes
    summary["packages"] = {name: {"folder": folder, "bytes": tree_bytes(out / folder)}
                           for name, folder in PACKAGES.items() if (out / folder).is_dir()}
    atomic.write_json(out / "summary.json", summary)
    return summary

