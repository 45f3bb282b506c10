"""The memory model against measurement: the tflite-micro wheel's TFLM arena of
real builtin baselines, and the converter's written custom-op models."""
import numpy as np
import pytest

from keras_supernet.arch import ArchConfig
from memory_model.memory import custom_graph_plan, model_flash_bytes, scratch_bytes
from memory_model.tflite_graph import plan_graph, read_tflite

CONFIGS = {
    "mean_depth2": ArchConfig(image_size=28, channels=1, patch_size=4, embed_dim=64, num_classes=10,
                              num_heads=[2, 2], qkv_dim=[64, 64], mlp_hidden=[128, 128]),
    "cls_low_rank_rgb": ArchConfig(image_size=32, channels=3, patch_size=4, embed_dim=48, num_classes=10,
                                   num_heads=[1, 3], qkv_dim=[16, 48], mlp_hidden=[96, 64], qkv_rank=[8, 0],
                                   proj_rank=[4, 0], fc1_rank=[0, 16], fc2_rank=[0, 12], pool="cls"),
    "patch7_depth3": ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10,
                                num_heads=[1, 2, 2], qkv_dim=[16, 32, 32], mlp_hidden=[64, 32, 64]),
    "stem_conv_tokenizer": ArchConfig(image_size=28, channels=1, stem=[[3, 1, 8], [3, 2, 16]], patch_size=2,
                                      patch_kernel=3, embed_dim=32, num_classes=10, num_heads=[2], qkv_dim=[32],
                                      mlp_hidden=[64]),
}


def _trained_like(config, seed=0):
    """The static ViT with weights like a trained one's (non-zero biases, LN params),
    so TFLiteConverter cannot fold them away."""
    from keras_supernet.static_vit import build_vit
    model = build_vit(config)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        offset = 1.0 if "gamma" in w.name else 0.0
        w.assign(rng.normal(0, 0.05, w.shape).astype(np.float32) + offset)
    return model


def _images(config, n=16, seed=0):
    return np.random.default_rng(seed).random((n, config.image_size, config.image_size, config.channels))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def builtin_model(request):
    from converter.baseline import convert_builtin
    config = CONFIGS[request.param]
    return config, convert_builtin(_trained_like(config), _images(config))


def test_builtin_arena_matches_the_tflite_micro_interpreter(builtin_model):
    from converter.baseline import tflm_arena
    _, tflite = builtin_model
    measured = tflm_arena(tflite)
    predicted = plan_graph(read_tflite(tflite), pointer_size=8, recording=True)
    assert predicted.head_bytes == measured["head"]
    assert abs(predicted.arena_bytes - measured["total"]) <= 0.02 * measured["total"], (predicted, measured)


def test_builtin_graph_is_larger_on_host_than_on_cortex_m(builtin_model):
    _, tflite = builtin_model
    graph = read_tflite(tflite)
    m7, host = plan_graph(graph, pointer_size=4), plan_graph(graph, pointer_size=8)
    assert m7.head_bytes == host.head_bytes and m7.tail_bytes < host.tail_bytes


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_written_custom_model_has_the_predicted_size_and_plan(name):
    from converter.float_model import read_weights
    from converter.convert import quantize_model
    from converter.tflite_writer import to_flatbuffer

    config = CONFIGS[name]
    model = _trained_like(config)
    arch, weights = read_weights(model)
    assert arch == config
    _, _, qmodel, plan = quantize_model(model, _images(config), progress=False)
    tflite = to_flatbuffer(qmodel)
    predicted = model_flash_bytes(config)
    assert abs(predicted - len(tflite)) <= 0.005 * len(tflite), (predicted, len(tflite))
    # Read back, the file's offline offsets planned by the TFLM port give the same head.
    graph = read_tflite(tflite)
    assert graph.offline_offsets[:len(plan.tensor_offsets)] == plan.tensor_offsets
    custom_scratch = dict(enumerate(scratch_bytes(config)))
    reread = plan_graph(graph, pointer_size=4, custom_scratch=custom_scratch)
    assert reread.head_bytes == custom_graph_plan(config).head_bytes
    assert reread.tail_bytes == plan.tail_bytes(4)


def test_analytic_builtin_graph_matches_the_converted_one(builtin_model):
    """'All techniques off' without building a model: same head, arena within 1%."""
    from memory_model.builtin_graph import builtin_arena, builtin_graph
    config, tflite = builtin_model
    real, analytic = read_tflite(tflite), builtin_graph(config)
    assert [op.op for op in analytic.operators] == [op.op for op in real.operators]
    for pointer in (4, 8):
        a, r = plan_graph(analytic, pointer), plan_graph(real, pointer)
        assert a.head_bytes == r.head_bytes
        assert abs(a.arena_bytes - r.arena_bytes) <= 0.01 * r.arena_bytes
    assert builtin_arena(config, 4) == (plan_graph(analytic, 4).head_bytes, plan_graph(analytic, 4).tail_bytes)


def test_techniques_off_costs_more_sram_than_on(builtin_model):
    from memory_model.memory import Techniques, evaluate
    config, _ = builtin_model
    off, on = evaluate(config, Techniques.off()), evaluate(config, Techniques())
    assert off.sram > on.sram and off.flash == on.flash and off.macs == on.macs


@pytest.mark.slow
@pytest.mark.tflm
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_predicted_arena_equals_tflm_host_runner(name, tmp_path):
    """The custom-op model in a stock MicroInterpreter (x86_64 build of the pinned TFLM):
    the prediction is exact; the builtin baseline's is within 2%."""
    from converter.baseline import convert_builtin
    from converter.convert import quantize_model
    from converter.tflite_writer import to_flatbuffer
    from tests.tflm_fixtures import tflm_root_or_skip
    from deploy.host import run_host

    root = tflm_root_or_skip()
    config = CONFIGS[name]
    model = _trained_like(config)
    _, _, qmodel, plan = quantize_model(model, _images(config), progress=False)
    image = np.zeros((1, config.image_size, config.image_size, config.channels), np.int8)
    custom = tmp_path / "model.tflite"
    custom.write_bytes(to_flatbuffer(qmodel))
    assert run_host(root, custom, image).arena_used_bytes == plan.arena_bytes(pointer_size=8)
    builtin = tmp_path / "baseline_builtin.tflite"
    builtin.write_bytes(convert_builtin(model, _images(config)))
    measured = run_host(root, builtin, image).arena_used_bytes
    predicted = plan_graph(read_tflite(builtin.read_bytes()), pointer_size=8).arena_bytes
    assert abs(predicted - measured) <= 0.02 * measured, (predicted, measured)


@pytest.mark.slow
@pytest.mark.tflm
def test_cortex_m7_arena_and_flash_match_the_prediction(tmp_path):
    """The custom-op model in the QEMU Cortex-M7 twin (32-bit, CMSIS-NN build): the arena
    is predicted exactly; the STM32F746 image is the model plus CODE_FLASH_BYTES. The
    builtin baseline (CMSIS-NN kernels there, reference kernels in the model) within 2%."""
    from converter.convert import quantize_model
    from converter.tflite_writer import to_flatbuffer
    from common.boards import load_board
    from memory_model.memory import CODE_FLASH_BYTES
    from tests.tflm_fixtures import arm_or_skip, tflm_root_or_skip
    from deploy import app, qemu

    root = tflm_root_or_skip()
    arm_or_skip()
    config = CONFIGS["cls_low_rank_rgb"]
    keras_model = _trained_like(config)
    _, _, qmodel, plan = quantize_model(keras_model, _images(config), progress=False)
    model = tmp_path / "model.tflite"
    model.write_bytes(to_flatbuffer(qmodel))
    image = np.zeros((1, config.image_size, config.image_size, config.channels), np.int8)
    spec = app.AppSpec(app.model_array_cc(model, tmp_path), app.arena_size(plan.required_arena_bytes(4)), image,
                       np.zeros(1, int))
    output, _ = qemu.run_qemu(app.build_app(root, "qemu-m7", spec, tmp_path / "qemu.elf"), count_instructions=False)
    assert output.arena_used_bytes == plan.arena_bytes(pointer_size=4)
    elf = app.build_app(root, "stm32f746", spec, tmp_path / "f746.elf", board=load_board("stm32f746"))
    assert app.section_sizes(elf)["flash"] == model.stat().st_size + image.nbytes + CODE_FLASH_BYTES

    from converter.baseline import convert_builtin
    builtin = tmp_path / "builtin" / "baseline_builtin.tflite"
    builtin.parent.mkdir()
    builtin.write_bytes(convert_builtin(keras_model, _images(config)))
    predicted = plan_graph(read_tflite(builtin.read_bytes()), pointer_size=4).arena_bytes
    spec = app.AppSpec(app.model_array_cc(builtin, builtin.parent), app.arena_size(2 * predicted), image,
                       np.zeros(1, int), with_builtins=True)      # the builtin graph's required arena is not modelled
    output, _ = qemu.run_qemu(app.build_app(root, "qemu-m7", spec, tmp_path / "qemu_builtin.elf"),
                              count_instructions=False)
    assert abs(predicted - output.arena_used_bytes) <= 0.02 * output.arena_used_bytes, (predicted, output)
