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
