"""Bring your own ViT: stock tf_keras ViTs (tests/byo_models.py, no project code in them)
trained briefly on Fashion-MNIST and converted by `mcuformer convert`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from tests import byo_models as bm
from tests.conftest import assert_one_line_error, run_cli
from tests.tflm_fixtures import int8_images, tflm_root_or_skip

EVAL_IMAGES = 2000
LAYERS_FILE = str(Path(__file__).with_name("byo_layers.py"))
NAMES = list(bm.STOCK_MODELS)


def _float_accuracy(model, dataset, input_scale, n=EVAL_IMAGES) -> float:
    x = dataset.x_test[:n].astype(np.float32) / 255.0 * input_scale
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1) == dataset.y_test[:n]))


@pytest.fixture(scope="module")
def trained(fashion_mnist, tmp_path_factory):
    """name -> (trained stock model, its .keras path), one short epoch each."""
    folder = tmp_path_factory.mktemp("byo_models")
    out = {}
    for name, (build, input_scale, from_logits) in bm.STOCK_MODELS.items():
        model = bm.train(build(), fashion_mnist, input_scale=input_scale, from_logits=from_logits)
        path = folder / f"{name}.keras"
        model.save(path)
        out[name] = (model, path)
    return out


@pytest.fixture(scope="module")
def converted(trained, fashion_mnist, tmp_path_factory):
    """name -> (output folder, report) of `convert` on the saved stock model."""
    from converter.convert import ConvertOptions, convert

    folder = tmp_path_factory.mktemp("byo_converted")
    options = ConvertOptions(eval_images=EVAL_IMAGES, baseline=False, custom_objects=LAYERS_FILE)
    return {name: (folder / name, convert(path, folder / name, fashion_mnist, options, progress=False))
            for name, (_, path) in trained.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_mapped_model_computes_the_stock_model(name, trained, converted, fashion_mnist):
    from converter.keras_import import import_vit

    model, _ = trained[name]
    _, input_scale, _ = bm.STOCK_MODELS[name]
    imported = import_vit(model)
    x = fashion_mnist.x_test[:64].astype(np.float32) / 255.0
    ours = imported.model.predict(x, verbose=0)
    theirs = model.predict(x * input_scale, verbose=0)
    if name == "rescaled_tanh_softmax":          # its head ends in softmax; ours outputs the logits
        ours = np.exp(ours - ours.max(axis=1, keepdims=True))
        ours /= ours.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    report = converted[name][1]
    assert report["import"]["source_float_accuracy"] == pytest.approx(
        _float_accuracy(model, fashion_mnist, input_scale), abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_int8_accuracy_within_one_point_of_the_stock_float_model(name, trained, converted, fashion_mnist):
    model, _ = trained[name]
    float_acc = _float_accuracy(model, fashion_mnist, bm.STOCK_MODELS[name][1])
    report = converted[name][1]
    assert report["accuracy"]["test_images"] == EVAL_IMAGES
    assert float_acc > 0.5, f"{name} did not learn ({float_acc:.3f}); the comparison would say nothing"
    assert abs(report["accuracy"]["int8_reference"] - float_acc) <= 0.01, (name, float_acc, report["accuracy"])


@pytest.mark.slow
@pytest.mark.tflm
@pytest.mark.parametrize("name", NAMES)
def test_tflm_host_is_bit_exact_and_its_arena_is_the_plan(name, converted, fashion_mnist):
    from converter.interpreter import run_tflite
    from deploy.host import run_host

    root = tflm_root_or_skip()
    out, report = converted[name]
    images = int8_images(fashion_mnist, 200)
    result = run_host(root, out / "model.tflite", images)
    reference = run_tflite(out / "model.tflite", images)
    np.testing.assert_array_equal(result.outputs, reference)
    assert result.arena_used_bytes == report["planned_arena_bytes_host"]


@pytest.mark.slow
def test_relu_model_tabulates_relu(converted):
    """Every MLP LUT of the relu model is relu's: flat at the output zero point up to the input's
    zero point, non-decreasing after (x*sigmoid(1.702x) would dip below it)."""
    from converter.interpreter import load_tflite

    qmodel = load_tflite(converted["dense_mean_relu"][0] / "model.tflite")
    mlps = [op for op in qmodel.ops if op.code == "MCUF_MLP"]
    assert mlps
    for op in mlps:
        lut = next(qmodel.tensors[i].data for i in op.inputs if qmodel.tensors[i].name.endswith("gelu_lut"))
        z_a, z_g = int(op.options["fc1_zp"]), int(op.options["gelu_zp"])
        levels = np.arange(256) - 128
        assert np.all(lut[levels <= z_a] == z_g)
        assert np.all(np.diff(lut.astype(int)) >= 0) and lut[-1] > z_g


@pytest.mark.slow
def test_rank_ratio_half_drops_flash_and_reports_the_accuracy_change(trained, converted, fashion_mnist, tmp_path):
    from converter.convert import ConvertOptions, convert
    from converter.float_model import dense_kernel, read_weights
    from converter.keras_import import import_vit
    from converter.low_rank import factorise

    name = "conv_cls_gelu"
    _, path = trained[name]
    full = converted[name][1]
    options = ConvertOptions(eval_images=EVAL_IMAGES, baseline=False, custom_objects=LAYERS_FILE, rank_ratio=0.5)
    report = convert(path, tmp_path / "low", fashion_mnist, options, progress=False)
    low = report["low_rank"]
    assert report["flash_bytes"] < full["flash_bytes"]
    assert low["float_accuracy_full_rank"] == pytest.approx(full["accuracy"]["float"], abs=1e-9)
    assert low["float_accuracy_change"] == pytest.approx(report["accuracy"]["float"] - full["accuracy"]["float"])
    # qkv of block 0 is 32 -> 48: half its 1,536 weights is rank 1536 * 0.5 / 80 = 9
    assert low["ranks"]["block0.qkv"] == 9 and report["arch"]["qkv_rank"][0] == 9
    shown = run_cli("report", str(tmp_path / "low")).stdout
    drop = low["flash_bytes_full_rank_predicted"] - low["flash_bytes_predicted"]
    assert f"flash drop {drop:,d} B" in shown and drop > 0
    assert f"float accuracy change {100 * low['float_accuracy_change']:+.2f} points" in shown
    # the factors are the best rank-r approximation (Eckart-Young): the error is the dropped singular values
    model = import_vit(trained[name][0]).model
    _, before = read_weights(model)
    _, after = read_weights(factorise(model, ratio=0.5)[0])
    w = dense_kernel(before["block0_attn"]["qkv"])
    s = np.linalg.svd(w, compute_uv=False)
    err = np.linalg.norm(w - after["block0_attn"]["qkv"]["v"] @ after["block0_attn"]["qkv"]["u"])
    assert err == pytest.approx(np.sqrt(np.sum(s[9:] ** 2)), rel=1e-4)


def test_keras_io_style_model_maps_exactly():
    """keras-io's Patches / PatchEncoder (extract_patches, Dense + Embedding) recognised by what they do;
    qkv_dim 128 (4 heads of 32) differs from the 32 channels."""
    from converter.keras_import import import_vit

    model = bm.keras_io_style()
    imported = import_vit(model)
    assert imported.arch.describe() == ("28px/p7 E32 depth2 heads[4, 4] qkv[128, 128] mlp[64, 64] "
                                        "ranks[0/0/0/0,0/0/0/0] pool=mean")
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(imported.model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)


@pytest.mark.parametrize("name", list(bm.REJECTED))
def test_unsupported_pattern_is_one_line_naming_the_layer(name):
    from converter.keras_import import import_vit

    build, layer, kind = bm.REJECTED[name]
    with pytest.raises(UserError) as info:
        import_vit(build())
    message = str(info.value)
    assert "\n" not in message
    assert f"'{layer}' ({kind})" in message and "supported:" in message


def test_model_with_an_unknown_custom_layer_asks_for_custom_objects(tmp_path):
    from converter.model_source import load_static

    path = tmp_path / "cls.keras"
    bm.conv_cls_gelu().save(path)
    with pytest.raises(UserError, match="--custom-objects"):
        load_static(path)


@pytest.mark.slow
def test_cli_unsupported_layer_is_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "bn.keras"
    bm.batchnorm_in_block().save(path)
    out = tmp_path / "out"
    proc = run_cli("convert", str(path), "--out", str(out), "--no-baseline", "--eval", "10", "--calib", "10")
    assert_one_line_error(proc, "'bn_in_block' (BatchNormalization)")
    assert not out.exists()


def test_readme_example_converts_and_is_quoted_verbatim():
    import inspect
    import sys

    from converter.keras_import import import_vit

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "examples" / "byo_vit"))
    try:
        import my_vit
    finally:
        sys.path.remove(str(root / "examples" / "byo_vit"))
    imported = import_vit(my_vit.build())
    assert imported.arch.describe() == ("28px/p7 E64 depth2 heads[4, 4] qkv[64, 64] mlp[128, 128] "
                                        "ranks[0/0/0/0,0/0/0/0] pool=mean")
    assert inspect.getsource(my_vit.build) in (root / "README.md").read_text()
