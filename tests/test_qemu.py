"""The example app's QEMU Cortex-M7 twin (mps2-an500, CMSIS-NN build through the
TFLM Makefile): same outputs as the host runner, exact instruction counts."""
from __future__ import annotations

import numpy as np
import pytest

from tests.tflm_fixtures import arm_or_skip, builtin_int8_model, int8_images, tflm_root_or_skip

pytestmark = [pytest.mark.tflm, pytest.mark.slow]


def test_qemu_twin_matches_host_and_counts_instructions(tmp_path, fashion_mnist):
    from deploy import app, host, qemu

    root = tflm_root_or_skip()
    arm_or_skip()
    model = tmp_path / "builtin.tflite"
    model.write_bytes(builtin_int8_model())
    images = int8_images(fashion_mnist, 3)
    images = np.concatenate([images, images[:1]])            # image 0 again: counts must repeat exactly
    labels = fashion_mnist.y_test[[0, 1, 2, 0]]
    spec = app.AppSpec(app.model_array_cc(model, tmp_path), arena_bytes=16 * 1024, images=images,
                       labels=labels, with_builtins=True)
    elf = app.build_app(root, "qemu-m7", spec, tmp_path / "app_qemu.elf")
    output, instructions = qemu.run_qemu(elf)

    on_host = host.run_host(root, model, images)
    np.testing.assert_array_equal(output.outputs, on_host.outputs)
    np.testing.assert_array_equal(output.expected, labels)
    np.testing.assert_array_equal(output.labels, on_host.outputs.argmax(axis=1))
    # 32-bit TFLM structs: the Cortex-M arena is smaller than the x86_64 one
    assert 0 < output.arena_used_bytes < on_host.arena_used_bytes
    assert instructions is not None and len(instructions) == 4
    assert instructions[0] == instructions[3]
    assert all(10_000 < n < 10_000_000 for n in instructions)
