import os
import subprocess
import sys

import pytest

import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any TensorFlow import)


def run_cli(*args, env=None, timeout=600):
    """Run `python -m mcuformer ARGS`; return the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "mcuformer", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def fashion_mnist():
    from common import datasets
    return datasets.load_fashion_mnist()


TFLM_TIER_MARKERS = ("tflm",)


def _in_tflm_tier(report) -> bool:
    return any(marker in report.keywords for marker in TFLM_TIER_MARKERS)


def pytest_terminal_summary(terminalreporter):
    """One visible line on the TFLM tier (kernels, runners, QEMU, builds): how many ran, how many skipped and why."""
    counts, reasons = {"passed": 0, "failed": 0, "skipped": 0}, set()
    for outcome in counts:
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") in ("call", "setup") and _in_tflm_tier(report):
                if outcome == "passed" and report.when != "call":
                    continue
                counts[outcome] += 1
                if outcome == "skipped" and isinstance(report.longrepr, tuple):
                    reasons.add(report.longrepr[2].removeprefix("Skipped: "))
    line = f"TFLM tier: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    if reasons:
        line += " (" + "; ".join(sorted(reasons))[:300] + ")"
    terminalreporter.write_sep("-", line)
