"""Benchmark: the load-path fuzzer (deploy/runner/fuzz_load.cc, ASan/UBSan) for a longer run.

Seeds: the demo-like ViT and the kernel-test models (tests/fuzz_seeds.py). The
run is cut into chunks with different random seeds, so that a crash is counted
and fuzzing goes on. Mode "no_crc" skips the CRC check so that mutants reach
the structural checks, Prepare and Eval (the meaningful run); mode "crc" keeps
it (every mutant stops there).

    .venv/bin/python benchmarks/fuzz.py [--seconds 600] [--chunk 60]

Writes benchmarks/results/fuzz.json (atomically): executions, seconds, crashes.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import atomic  # noqa: E402
from common.errors import UserError  # noqa: E402
from mcuformer.cli import run_guarded  # noqa: E402

STAGES = ("crc_rejected", "check_rejected", "allocate_failed", "invoke_failed", "ran")


def fuzz_mode(binary, seeds, work: Path, seconds: float, chunk: float, check_crc: bool) -> dict:
    from deploy import fuzz

    totals = {"executions": 0, "seconds": 0.0, "crashes": 0, **{s: 0 for s in STAGES}, "mutations": {}}
    crash_reports, rng_seed = [], 0
    while totals["seconds"] < seconds:
        rng_seed += 1
        run = fuzz.run_fuzzer(binary, seeds, work / f"crash_{rng_seed}.tflite", rng_seed=rng_seed,
                              seconds=min(chunk, seconds - totals["seconds"]), check_crc=check_crc)
        if run.crashed:
            totals["crashes"] += 1
            lines = [line for line in run.crash_report.splitlines() if "SUMMARY" in line or "runtime error" in line]
            crash_reports.append({"rng_seed": rng_seed,   # without folders: no machine paths in the results
                                  "report": [re.sub(r"(/[^\s/]+)+/", "", line) for line in lines[-3:]]})
            totals["seconds"] += chunk         # the harness died: charge the whole chunk
            continue
        summary = run.summary
        totals["executions"] += summary["executions"]
        totals["seconds"] += summary["seconds"]
        for stage in STAGES:
            totals[stage] += summary[stage]
        for name, count in summary["mutations"].items():
            totals["mutations"][name] = totals["mutations"].get(name, 0) + count
        print(f"{'crc' if check_crc else 'no_crc'} chunk {rng_seed}: {summary['executions']:,d} executions, "
              f"{summary['ran']:,d} ran Invoke", flush=True)
    totals["seconds"] = round(totals["seconds"], 1)
    totals["harness"] = (f"fuzz_load_asan{'' if check_crc else ' --no-crc'} --seconds {chunk:g} --seed N "
                         + " ".join(p.name for p in seeds))
    totals["crash_reports"] = crash_reports
    return totals


def main() -> int:
    from common import datasets
    from deploy import fuzz, tflm
    from tests.fuzz_seeds import write_seed_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600, help="fuzzing time without the CRC check")
    parser.add_argument("--crc-seconds", type=float, default=30, help="fuzzing time with the CRC check")
    parser.add_argument("--chunk", type=float, default=60, help="seconds per harness run")
    args = parser.parse_args()
    root = tflm.find_tflm()
    if root is None:
        raise UserError(tflm.missing_reason())
    binary = fuzz.build_fuzzer(root)
    with tempfile.TemporaryDirectory() as tmp:
        seeds = write_seed_models(Path(tmp) / "seeds", datasets.load_fashion_mnist())
        modes = {"no_crc": fuzz_mode(binary, seeds, Path(tmp), args.seconds, args.chunk, check_crc=False),
                 "crc": fuzz_mode(binary, seeds, Path(tmp), args.crc_seconds, args.chunk, check_crc=True)}
    out = Path(__file__).resolve().parent / "results" / "fuzz.json"
    command = f".venv/bin/python benchmarks/fuzz.py --seconds {args.seconds:g} --crc-seconds {args.crc_seconds:g} " \
              f"--chunk {args.chunk:g}"
    atomic.write_json(out, {
        "command": command, "sanitizers": "ASan + UBSan (-fno-sanitize-recover=all), abort() counted as a crash",
        "seeds": [p.name for p in seeds], "executions": modes["no_crc"]["executions"],
        "seconds": modes["no_crc"]["seconds"], "crashes": modes["no_crc"]["crashes"] + modes["crc"]["crashes"],
        "modes": modes})
    print(f"wrote {out}: {modes['no_crc']['executions']:,d} executions without the CRC check in "
          f"{modes['no_crc']['seconds']} s, {modes['no_crc']['crashes'] + modes['crc']['crashes']} crashes")
    return 0 if modes["no_crc"]["crashes"] + modes["crc"]["crashes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run_guarded(main))
