"""The required arena (search/tflm_required_arena.py): the smallest arena TFLM's
AllocateTensors and Invoke succeed with, against a hand count and against the
smallest arena found by bisection in TFLM itself, on the x86_64 host runner
(pointer 8) and in the Cortex-M7 app under QEMU (pointer 4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from keras_supernet.arch import ArchConfig, deit_tiny, mcuformer_shape
from keras_supernet.space import SearchSpace
from memory_model import tflm_required_arena as required_arena
from memory_model.greedy_planner import align_up
from memory_model.memory import Techniques, custom_graph_plan, evaluate
from memory_model.tflm_tail import custom_graph_tail
from tests.synthetic_models import custom_model

# The demo's subnet (search winner under the 6 KiB / 128 KiB budget): its arena_used_bytes
# is 4,436 B (32-bit) / 6,096 B (64-bit), yet AllocateTensors needs more.
DEMO_SHAPE = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=48, num_classes=10,
                        num_heads=[2, 2, 1], qkv_dim=[32, 32, 16], mlp_hidden=[96, 48, 48],
                        qkv_rank=[12, 12, 12], proj_rank=[16, 8, 4], fc1_rank=[24, 12, 12], fc2_rank=[24, 12, 12])
CLS_RGB = ArchConfig(image_size=32, channels=3, patch_size=4, embed_dim=48, num_classes=10,
                     num_heads=[1, 3], qkv_dim=[16, 48], mlp_hidden=[96, 64], qkv_rank=[8, 0],
                     proj_rank=[4, 0], fc1_rank=[0, 16], fc2_rank=[0, 12], pool="cls")
# Sequence pooling (SPEC 2.4): the head's scratch holds the 49 tokens' scores too, and its graph a `score` tensor.
SEQ_POOL = ArchConfig(image_size=28, channels=1, patch_size=4, embed_dim=32, num_classes=10, num_heads=[2, 1],
                      qkv_dim=[32, 16], mlp_hidden=[64, 32], qkv_rank=[8, 0], pool="seq")
SPACE = SearchSpace.load(Path(__file__).resolve().parent.parent / "configs" / "spaces" / "fmnist.yaml")
TECHNIQUES = [Techniques(True, pd, to) for pd in (False, True) for to in (False, True)]


def _random_subnets(n: int, seed: int = 7) -> list:
    """(config, techniques) of the fmnist space, all depths and rank mixes, every technique set."""
    rng = np.random.default_rng(seed)
    return [(SPACE.sample(rng), TECHNIQUES[k % len(TECHNIQUES)]) for k in range(n)]


def test_hand_counted_graph_on_32_bit():
    """One op, three tensors (two planned), one scratch request, no temp tensors, no inputs.

    Tail: SingleArenaBufferAllocator 36, GreedyMemoryPlanner 44, MicroAllocator 36,
    MicroBuiltinDataAllocator 8, SubgraphAllocations 8, 3 TfLiteEvalTensor 36,
    1 NodeAndRegistration 32, 1 ScratchBufferHandle 4 = 204 B, all 4-aligned. Head at
    planning: 13 ScratchBufferRequests of 12 B = 156, a size_t (160), 4 AllocationInfo of
    24 B (256). The planner then needs 40 B for each of 3 buffers between 256 and the tail
    aligned down to 16. Arena size 12 + 16k puts the tail at 16k - 192, already 16-aligned:
    16k - 192 >= 256 + 120 gives k = 36, 588 B (size 16k: tail 16k - 204, aligned to
    16k - 208, 592 B; sizes 13..15 + 16k waste their extra bytes).
    """
    graph = required_arena.GraphAllocations(num_tensors=3, ops=(required_arena.OpAllocations(0, (), 1),),
                                            planned_tensors=2, input_channels=(), output_channels=())
    assert required_arena.required_bytes(graph, head_bytes=0, pointer_size=4) == 588
    # The plan's head must then fit below the final tail, 588 - 12 - 192 = 384.
    assert required_arena.required_bytes(graph, head_bytes=384, pointer_size=4) == 588
    assert required_arena.required_bytes(graph, head_bytes=385, pointer_size=4) > 588


def test_final_tail_is_the_tail_model():
    """At a 16-aligned end, the simulated tail is tflm_tail's (an independent count)."""
    for config, _ in _random_subnets(40) + [(DEMO_SHAPE, Techniques()), (CLS_RGB, Techniques())]:
        for pointer in (4, 8):
            margins = required_arena._residue_margins(required_arena.custom_graph_allocations(config), pointer)
            assert -margins[0][1] == custom_graph_tail(config, pointer)


@pytest.mark.parametrize("pointer", [4, 8])
def test_required_arena_bounds(pointer):
    for config, techniques in _random_subnets(200, seed=3):
        plan = custom_graph_plan(config, techniques)
        required = plan.required_arena_bytes(pointer)
        # A working 16-multiple arena holds arena_used_bytes (its end 16-aligned) when done.
        assert align_up(required, 16) >= plan.arena_bytes(pointer)
    assert evaluate(DEMO_SHAPE).sram == custom_graph_plan(DEMO_SHAPE).required_arena_bytes(4)


def test_bookkeeping_grows_with_tensors():
    small = custom_graph_plan(DEMO_SHAPE).required_arena_bytes(4)
    deeper = ArchConfig.from_dict({**DEMO_SHAPE.to_dict(), "num_heads": [2, 2, 1, 1], "qkv_dim": [32, 32, 16, 16],
                                   "mlp_hidden": [96, 48, 48, 48], "qkv_rank": [12, 12, 12, 12],
                                   "proj_rank": [16, 8, 4, 4], "fc1_rank": [24, 12, 12, 12],
                                   "fc2_rank": [24, 12, 12, 12]})
    assert custom_graph_plan(deeper).required_arena_bytes(4) > small


# ---- against TFLM -------------------------------------------------------------------------

def _image(config) -> np.ndarray:
    return np.random.default_rng(1).integers(-128, 128, (1, config.image_size, config.image_size, config.channels),
                                             dtype=np.int8)


def _smallest_host_arena(root, model_path, config, upper: int) -> int:
    """Bisection for the smallest arena with which the host runner's AllocateTensors and
    Invoke succeed and give the outputs of a large arena."""
    from deploy.host import run_host

    image = _image(config)
    expected = run_host(root, model_path, image).outputs

    def works(arena: int) -> bool:
        try:
            outputs = run_host(root, model_path, image, arena_bytes=arena).outputs
        except UserError:
            return False
        np.testing.assert_array_equal(outputs, expected)
        return True

    low, high = 0, upper                                   # an empty arena fails
    while not works(high):
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if works(mid) else (mid, high)
    return high


def _check_host_minimum(root, tmp_path, name, config, techniques=Techniques()) -> tuple:
    """(bisected, predicted) smallest arena of the x86_64 host runner."""
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(custom_model(config, techniques))
    predicted = custom_graph_plan(config, techniques).required_arena_bytes(pointer_size=8)
    return _smallest_host_arena(root, path, config, upper=2 * predicted), predicted


@pytest.mark.tflm
def test_host_smallest_arena_is_the_prediction(tmp_path):
    """x86_64 (pointer 8): the demo's subnet, a class-token RGB one and 22 random subnets
    of the fmnist space (2-4 blocks, all rank mixes, every technique set); sequence pooling in
    test_sequence_pooling_model_in_tflm_equals_reference_with_the_planned_arena."""
    from tests.tflm_fixtures import tflm_root_or_skip

    root = tflm_root_or_skip()
    cases = [("demo", DEMO_SHAPE, Techniques()), ("cls_rgb", CLS_RGB, Techniques())]
    cases += [(f"random{k}", config, techniques) for k, (config, techniques) in enumerate(_random_subnets(22))]
    results = {name: _check_host_minimum(root, tmp_path, name, config, techniques)
               for name, config, techniques in cases}
    assert {name: smallest for name, (smallest, _) in results.items()} == \
        {name: predicted for name, (_, predicted) in results.items()}
    # The demo needs more than its arena_used_bytes: the planning bookkeeping is larger than its plan.
    assert results["demo"][0] > custom_graph_plan(DEMO_SHAPE).arena_bytes(pointer_size=8)


# Convolutional tokenizers (SPEC 2.1), their tokens over the image in place: strips going up with a
# 2-row halo below (E 32 > 4*4) and going down with a 1-row halo above (E 40 <= 7*7).
CONV_TOKENIZERS = {
    "conv_up": ArchConfig(image_size=28, channels=1, patch_size=4, patch_kernel=7, embed_dim=32, num_classes=10,
                          num_heads=[2], qkv_dim=[32], mlp_hidden=[64]),
    "conv_down": ArchConfig(image_size=28, channels=1, patch_size=7, patch_kernel=9, embed_dim=40, num_classes=10,
                            num_heads=[2], qkv_dim=[32], mlp_hidden=[80], pool="cls"),
}


@pytest.mark.tflm
@pytest.mark.parametrize("name", sorted(CONV_TOKENIZERS))
def test_conv_tokenizer_model_in_tflm_equals_reference_with_the_planned_arena(name, tmp_path):
    _check_in_tflm(name, CONV_TOKENIZERS[name], tmp_path)


# Convolutional stems (SPEC 3): MCUF_PATCH_EMBED layers with ReLU and no position embedding, each writing its
# feature map over its input in place: the F746 stem (a stride-1 layer 16x wider than the image, strips going
# up, then a stride-2 one) before a 3x3 tokenizer, and one strided layer before a plain patch split with a class
# token on an RGB image.
STEMS = {
    "stem_f746": ArchConfig(image_size=28, channels=1, stem=[[3, 1, 16], [3, 2, 32]], patch_size=2, patch_kernel=3,
                            embed_dim=32, num_classes=10, num_heads=[2], qkv_dim=[32], mlp_hidden=[64]),
    "stem_cls_rgb": ArchConfig(image_size=32, channels=3, stem=[[4, 2, 24]], patch_size=2, embed_dim=40,
                               num_classes=10, num_heads=[2], qkv_dim=[32], mlp_hidden=[80], pool="cls"),
}


@pytest.mark.tflm
@pytest.mark.parametrize("name", sorted(STEMS))
def test_stem_model_in_tflm_equals_reference_with_the_planned_arena(name, tmp_path):
    _check_in_tflm(name, STEMS[name], tmp_path)


@pytest.mark.tflm
def test_stem_model_smallest_arena_under_every_technique_set(tmp_path):
    from tests.tflm_fixtures import tflm_root_or_skip

    root = tflm_root_or_skip()
    every_set = [Techniques(True, decomposition, overwrite) for decomposition in (False, True)
                 for overwrite in (False, True)]
    results = [_check_host_minimum(root, tmp_path, f"stem{k}", STEMS["stem_f746"], techniques)
               for k, techniques in enumerate(every_set)]
    assert [smallest for smallest, _ in results] == [predicted for _, predicted in results]
    # Without patch decomposition the 12,544 B first feature map no longer lands on the image.
    assert results[0][1] > results[-1][1]


@pytest.mark.tflm
def test_sequence_pooling_model_in_tflm_equals_reference_with_the_planned_arena(tmp_path):
    _check_in_tflm("seq_pool", SEQ_POOL, tmp_path)


def _check_in_tflm(name, config, tmp_path):
    """The host runner's logits equal the reference's, the flash model the file size within 0.5%,
    arena_used_bytes the plan, and the smallest arena by bisection the prediction."""
    from converter.interpreter import run_tflite
    from deploy.host import run_host
    from memory_model.memory import model_flash_bytes
    from tests.tflm_fixtures import tflm_root_or_skip

    root = tflm_root_or_skip()
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(custom_model(config))
    assert abs(model_flash_bytes(config) - path.stat().st_size) <= 0.005 * path.stat().st_size
    shape = (6, config.image_size, config.image_size, config.channels)
    images = np.random.default_rng(3).integers(-128, 128, shape, dtype=np.int8)
    result = run_host(root, path, images)
    assert np.array_equal(result.outputs, run_tflite(path, images).reshape(len(images), -1))
    assert result.arena_used_bytes == custom_graph_plan(config).arena_bytes(pointer_size=8)
    smallest, predicted = _check_host_minimum(root, tmp_path, name, config)
    assert smallest == predicted


# The patch embedding's patches per pass (SPEC 2.1): one where its scratch sets the peak (a 64 x 64 RGB
# image of 64 16-wide tokens: image + scratch), four where another op's scope does (the demo, 28 px, patch 7).
PATCH_EMBED_PEAK = ArchConfig(image_size=64, channels=3, patch_size=8, embed_dim=16, num_classes=10, num_heads=[1],
                              qkv_dim=[16], mlp_hidden=[32])


@pytest.mark.tflm
@pytest.mark.parametrize("name, passes", [("patch_embed_peak", 1), ("demo", 4)])
def test_patches_per_pass_written_and_its_arena_exact_in_tflm(name, passes, tmp_path):
    from flatbuffers import flexbuffers
    from deploy.host import run_host
    from tests.tflm_fixtures import tflm_root_or_skip
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    root = tflm_root_or_skip()
    config = {"patch_embed_peak": PATCH_EMBED_PEAK, "demo": DEMO_SHAPE}[name]
    tflite = custom_model(config)
    patch_embed = schema.Model.GetRootAs(tflite, 0).Subgraphs(0).Operators(0)
    assert flexbuffers.Loads(patch_embed.CustomOptionsAsNumpy().tobytes())["patches_per_pass"] == passes
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(tflite)
    assert run_host(root, path, _image(config)).arena_used_bytes == custom_graph_plan(config).arena_bytes(8)
    smallest, predicted = _check_host_minimum(root, tmp_path, name, config)
    assert smallest == predicted


@pytest.mark.slow
@pytest.mark.tflm
@pytest.mark.parametrize("name", ["deit_tiny", "mcuformer_shape"])
def test_host_smallest_arena_of_the_paper_shapes(name, tmp_path):
    from tests.tflm_fixtures import tflm_root_or_skip

    root = tflm_root_or_skip()
    config = {"deit_tiny": deit_tiny, "mcuformer_shape": mcuformer_shape}[name]()
    smallest, predicted = _check_host_minimum(root, tmp_path, name, config)
    assert smallest == predicted


@pytest.mark.slow
@pytest.mark.tflm
def test_cortex_m7_smallest_arena_is_the_prediction(tmp_path):
    """32-bit (pointer 4), the example app in QEMU: the predicted arena runs with the host's
    outputs, one byte less fails in AllocateTensors. The app's arena array may be any size."""
    from tests.tflm_fixtures import arm_or_skip, tflm_root_or_skip
    from deploy import app, qemu
    from deploy.host import run_host

    root = tflm_root_or_skip()
    arm_or_skip()
    random_subnet, techniques = _random_subnets(1, seed=11)[0]
    for name, config, techniques in (("demo", DEMO_SHAPE, Techniques()), ("cls_rgb", CLS_RGB, Techniques()),
                                     ("stem", STEMS["stem_f746"], Techniques()), ("random", random_subnet, techniques)):
        path = tmp_path / name / "model.tflite"
        path.parent.mkdir()
        path.write_bytes(custom_model(config, techniques))
        image = _image(config)
        predicted = custom_graph_plan(config, techniques).required_arena_bytes(pointer_size=4)
        model_cc = app.model_array_cc(path, path.parent)
        outputs = {}
        for arena in (predicted, predicted - 1):
            spec = app.AppSpec(model_cc, arena, image, np.zeros(1, int))
            elf = app.build_app(root, "qemu-m7", spec, tmp_path / name / f"app_{arena}.elf")
            try:
                outputs[arena] = qemu.run_qemu(elf, count_instructions=False)[0].outputs
            except UserError as exc:
                outputs[arena] = str(exc)
        np.testing.assert_array_equal(outputs[predicted], run_host(root, path, image).outputs)
        assert "AllocateTensors failed" in outputs[predicted - 1], (name, outputs[predicted - 1])
