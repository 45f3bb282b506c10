"""Host runner (deploy/runner/host_runner.cc, built through the TFLM Makefile)
against the tflite-micro wheel's interpreter on a builtin int8 graph."""
from __future__ import annotations

import numpy as np
import pytest

from common.errors import UserError
from tests.tflm_fixtures import builtin_int8_model, int8_images, tflm_root_or_skip

pytestmark = pytest.mark.tflm


@pytest.fixture(scope="module")
def builtin_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("builtin") / "builtin.tflite"
    path.write_bytes(builtin_int8_model())
    return path


def test_host_runner_matches_tflm_wheel(builtin_model, fashion_mnist):
    from tflite_micro.python.tflite_micro import runtime
    from deploy.host import run_host

    root = tflm_root_or_skip()
    images = int8_images(fashion_mnist, 16)
    result = run_host(root, builtin_model, images)

    wheel = runtime.Interpreter.from_bytes(builtin_model.read_bytes())
    expected = []
    for image in images:
        wheel.set_input(image[None], 0)
        wheel.invoke()
        expected.append(wheel.get_output(0)[0])
    assert result.outputs.shape == (16, 10)
    np.testing.assert_array_equal(result.outputs, np.asarray(expected, np.int8))
    assert len(np.unique(result.outputs, axis=0)) > 1          # real images give different logits
    assert 1000 < result.arena_used_bytes < 64 * 1024


def test_host_runner_rejects_wrong_input_size(builtin_model):
    from deploy.host import run_host

    root = tflm_root_or_skip()
    with pytest.raises(UserError, match="multiple of the input tensor size"):
        run_host(root, builtin_model, np.zeros((1, 27, 28, 1), np.int8))


def test_host_runner_reports_a_too_small_arena(builtin_model):
    from deploy.host import run_host

    root = tflm_root_or_skip()
    with pytest.raises(UserError, match="AllocateTensors failed"):
        run_host(root, builtin_model, np.zeros((1, 28, 28, 1), np.int8), arena_bytes=256)
