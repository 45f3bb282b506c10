"""converter/: float mirror, PTQ accuracy, flatbuffer round trip, builtin baseline in TFLM, CLI, bad input."""
import json

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

import tf_keras as keras

from converter import baseline
from converter.calibrate import calibrate
from converter.float_model import forward, read_weights
from converter.interpreter import load_tflite, run_tflite
from converter.convert import ConvertOptions, calibrated_ranges, quantize_model
from converter.qmodel import quantize_images, run
from converter.tflite_writer import to_flatbuffer
from keras_supernet.arch import ArchConfig
from keras_supernet.static_vit import build_vit
from common.errors import UserError
from memory_model.memory import scratch_bytes

TINY = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=48, num_classes=10, num_heads=(2, 2),
                  qkv_dim=(48, 48), mlp_hidden=(96, 96), fc1_rank=(0, 16))


def _briefly_trained(config, fashion_mnist, epochs: int):
    keras.utils.set_random_seed(0)
    model = build_vit(config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(fashion_mnist.x_train[:20000] / 255.0, fashion_mnist.y_train[:20000], epochs=epochs, batch_size=128,
              verbose=0)
    return model


def _float_and_int8_accuracy(model, qmodel, fashion_mnist, images: int = 2000) -> tuple:
    x, y = fashion_mnist.x_test[:images], fashion_mnist.y_test[:images]
    float_acc = np.mean(model.predict(x / 255.0, batch_size=500, verbose=0).argmax(1) == y)
    return float_acc, np.mean(run(qmodel, quantize_images(x / 255.0)).argmax(1) == y)


@pytest.fixture(scope="session")
def trained(fashion_mnist, tmp_path_factory):
    """A tiny ViT trained briefly on Fashion-MNIST (about 20 s), saved as .keras."""
    model = _briefly_trained(TINY, fashion_mnist, epochs=3)
    path = tmp_path_factory.mktemp("subnet") / "tiny.keras"
    model.save(path)
    return model, path


@pytest.fixture(scope="session")
def converted(trained, fashion_mnist, tmp_path_factory):
    model, _ = trained
    calib = fashion_mnist.x_train[np.random.default_rng(0).permutation(60000)[:300]] / 255.0
    arch, weights, qmodel, plan = quantize_model(model, calib, ConvertOptions(), progress=False)
    path = tmp_path_factory.mktemp("model") / "model.tflite"
    path.write_bytes(to_flatbuffer(qmodel))
    return arch, weights, qmodel, plan, path


def _random_model(config):
    model = build_vit(config)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0, 0.1, w.shape))
    return model


@pytest.mark.parametrize("pool", ["mean", "cls", "seq"])
def test_float_mirror_matches_keras(pool):
    config = TINY.replace(pool=pool, qkv_rank=[6, 0], proj_rank=[0, 5], fc2_rank=[7, 0])
    model = _random_model(config)
    arch, weights = read_weights(model)
    images = np.random.default_rng(1).random((3, 28, 28, 1)).astype(np.float32)
    assert arch == config
    np.testing.assert_allclose(forward(arch, weights, images), model(images).numpy(), atol=1e-4)


@pytest.mark.parametrize("patch, kernel", [(4, 7), (7, 10)])
def test_float_mirror_of_a_conv_tokenizer_matches_keras(patch, kernel):
    """The static ViT's SAME-padded stride-P convolution == the mirror's zero-padded K x K windows
    (SPEC 2.1), for odd and even K - P; the architecture survives the model."""
    config = TINY.replace(patch_size=patch, patch_kernel=kernel)
    model = _random_model(config)
    arch, weights = read_weights(model)
    images = np.random.default_rng(2).random((3, 28, 28, 1)).astype(np.float32)
    assert arch == config and weights["patch_embed"]["kernel"].shape == (kernel, kernel, 1, 48)
    np.testing.assert_allclose(forward(arch, weights, images), model(images).numpy(), atol=1e-4)


STEM = TINY.replace(stem=[[3, 1, 8], [3, 2, 16]], patch_size=2, patch_kernel=3)


def test_float_mirror_of_a_stem_matches_keras():
    """Keras' SAME-padded Conv2D + ReLU stem layers == the mirror's zero-padded windows (SPEC 2.1) with a
    ReLU; the stem survives the model, and the patch embedding reads the last layer's 16 channels."""
    model = _random_model(STEM)
    arch, weights = read_weights(model)
    images = np.random.default_rng(2).random((3, 28, 28, 1)).astype(np.float32)
    assert arch == STEM and arch.grid == 7 and weights["patch_embed"]["kernel"].shape == (3, 3, 16, 48)
    assert [weights[f"stem{j}"]["kernel"].shape for j in range(2)] == [(3, 3, 1, 8), (3, 3, 8, 16)]
    taps = {}
    logits = forward(arch, weights, images, lambda name, value: taps.setdefault(name, value))
    np.testing.assert_allclose(logits, model(images).numpy(), atol=1e-4)
    stem1 = keras.Model(model.input, model.get_layer("stem1").output)(images).numpy()
    np.testing.assert_allclose(taps["stem1"], stem1, atol=1e-5)
    assert taps["stem0"].shape == (3, 28, 28, 8) and taps["stem0"].min() == 0.0


@pytest.mark.parametrize("change", ["name", "activation", "padding"])
def test_a_convolution_that_is_no_stem_layer_is_refused(change):
    inputs = keras.Input((28, 28, 1))
    conv = {"name": dict(name="conv"), "activation": dict(name="stem0", activation=None),
            "padding": dict(name="stem0", padding="valid")}[change]
    x = keras.layers.Conv2D(8, 2, strides=2, **{"padding": "same", "activation": "relu", **conv})(inputs)
    for layer in build_vit(TINY.replace(image_size=14)).layers[1:]:
        x = layer(x)
    with pytest.raises(UserError, match="stem convolution must be named stem0"):
        read_weights(keras.Model(inputs, x))


@pytest.mark.slow
def test_stem_int8_tracks_float(fashion_mnist):
    """A tiny ViT behind a 2-layer stem, trained briefly: the int8 model (three MCUF_PATCH_EMBED, the stem
    ones with ReLU and no position embedding) agrees with float on 2,000 test images within one point."""
    model = _briefly_trained(STEM, fashion_mnist, epochs=2)
    calib = fashion_mnist.x_train[np.random.default_rng(0).permutation(60000)[:300]] / 255.0
    _, _, qmodel, _ = quantize_model(model, calib, ConvertOptions(), progress=False)
    embeds = [op.options for op in qmodel.ops if op.code == "MCUF_PATCH_EMBED"]
    assert [(o["relu"], o["has_pos"], o["patch"], o["kernel"]) for o in embeds] == \
        [(1, 0, 1, 3), (1, 0, 2, 3), (0, 1, 2, 3)]
    assert [qmodel.tensors[qmodel.index(f"stem{j}")].zp for j in range(2)] == [-128, -128]   # ReLU: [0, hi]
    float_acc, int8_acc = _float_and_int8_accuracy(model, qmodel, fashion_mnist)
    assert float_acc > 0.7
    assert abs(float_acc - int8_acc) <= 0.01, (float_acc, int8_acc)


@pytest.mark.slow
def test_sequence_pooling_int8_tracks_float(fashion_mnist):
    """A tiny pool-seq ViT trained briefly: its int8 model (MCUF_HEAD pool 2) agrees with float on
    2,000 test images within one point, and its learned token weights are not uniform (not a mean)."""
    model = _briefly_trained(TINY.replace(pool="seq"), fashion_mnist, epochs=3)
    calib = fashion_mnist.x_train[np.random.default_rng(0).permutation(60000)[:300]] / 255.0
    arch, weights, qmodel, _ = quantize_model(model, calib, ConvertOptions(), progress=False)
    head = next(op for op in qmodel.ops if op.code == "MCUF_HEAD")
    assert head.options["pool"] == 2 and qmodel.tensors[head.inputs[-1]].shape == (48,)
    float_acc, int8_acc = _float_and_int8_accuracy(model, qmodel, fashion_mnist)
    assert float_acc > 0.7
    assert abs(float_acc - int8_acc) <= 0.01, (float_acc, int8_acc)
    taps = {}
    forward(arch, weights, fashion_mnist.x_test[:50] / 255.0, lambda name, value: taps.setdefault(name, value))
    assert np.abs(taps["head.pooled"] - taps["head.h"].mean(axis=1)).max() > 0.1


@pytest.mark.slow
def test_int8_accuracy_within_one_point_of_float(trained, converted, fashion_mnist):
    model, _ = trained
    *_, path = converted
    x, y = fashion_mnist.x_test, fashion_mnist.y_test
    float_acc = np.mean(model.predict(x / 255.0, batch_size=500, verbose=0).argmax(1) == y)
    int8_acc = np.mean(run_tflite(path, quantize_images(x / 255.0)).argmax(1) == y)
    assert float_acc > 0.7                              # the model did learn
    assert abs(float_acc - int8_acc) <= 0.01, (float_acc, int8_acc)


def test_flatbuffer_round_trip_in_tflm_schema(converted, fashion_mnist):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    from flatbuffers import flexbuffers

    arch, _, qmodel, plan, path = converted
    buf = path.read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    assert buf[4:8] == b"TFL3" and model.Version() == 3 and model.SubgraphsLength() == 1
    assert model.Buffers(0).DataLength() == 0
    for i in range(1, model.BuffersLength()):
        b = model.Buffers(i)
        if b.DataLength():
            assert b._tab.Vector(b._tab.Offset(4)) % 16 == 0, f"buffer {i} is not 16-byte aligned"
    codes = {model.OperatorCodes(i).CustomCode().decode() for i in range(model.OperatorCodesLength())}
    assert codes == {"MCUF_PATCH_EMBED", "MCUF_ATTENTION", "MCUF_MLP", "MCUF_HEAD"}
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # SPEC 4: the patch embedding gained kernel, patches_per_pass, then has_pos and relu; the attention tokens_per_pass
        # and keep_t, the head sequence pooling
        version = {b"MCUF_PATCH_EMBED": 4, b"MCUF_ATTENTION": 2, b"MCUF_HEAD": 2}.get(oc.CustomCode(), 1)
        assert oc.BuiltinCode() == schema.BuiltinOperator.CUSTOM and oc.Version() == version
    g = model.Subgraphs(0)
    names = [g.Tensors(i).Name().decode() for i in range(g.TensorsLength())]
    assert names[:2 * arch.depth + 3] == plan.tensor_names
    assert g.InputsAsNumpy().tolist() == [0] and g.OutputsAsNumpy().tolist() == [2 * arch.depth + 2]
    image_q = g.Tensors(0).Quantization()
    assert image_q.ZeroPoint(0) == -128 and abs(image_q.Scale(0) - 1 / 255) < 1e-9
    for i in range(g.OperatorsLength()):
        options = flexbuffers.Loads(g.Operators(i).CustomOptionsAsNumpy().tobytes())
        version = {0: 4, g.OperatorsLength() - 1: 2}.get(i, 2 if i % 2 else 1)      # attention at odd indices
        assert options == qmodel.ops[i].options and options["version"] == version
    meta = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    offline = np.frombuffer(model.Buffers(meta["OfflineMemoryAllocation"]).DataAsNumpy().tobytes(), np.int32)
    n = g.TensorsLength()
    assert offline.tolist() == [1, 0, n] + list(plan.tensor_offsets) + [-1] * (n - len(plan.tensor_offsets))
    images = quantize_images(fashion_mnist.x_test[:64] / 255.0)
    assert np.array_equal(run_tflite(path, images), run(qmodel, images))
    assert len(load_tflite(path).ops) == 2 * arch.depth + 2


def _valid_multiplier(m, s) -> bool:
    return (m == 0 or (1 << 30) <= abs(m) < (1 << 31)) and -31 <= s <= 30


def _real(m, s) -> float:
    """The real number a (multiplier, shift) pair stands for: m * 2^(s - 31)."""
    return m * 2.0 ** (s - 31)


ZERO_POINT_OPTIONS = {"MCUF_PATCH_EMBED": ["pos_zp"], "MCUF_ATTENTION": ["ln_zp", "qkv_t_zp", "proj_t_zp"],
                      "MCUF_MLP": ["ln_zp", "fc1_t_zp", "fc2_t_zp", "fc1_zp", "gelu_zp"],
                      "MCUF_HEAD": ["ln_zp", "pool_zp"]}


def test_options_hold_the_architecture_and_the_tensor_scales(converted):
    """Every op's options against TINY and the written tensors' scales, worked out here (SPEC 1-2)."""
    _, _, qmodel, _, _ = converted
    tensor = {t.name: t for t in qmodel.tensors}
    assert [op.code for op in qmodel.ops] == ["MCUF_PATCH_EMBED"] + ["MCUF_ATTENTION", "MCUF_MLP"] * 2 + ["MCUF_HEAD"]
    pe, attn0, mlp0, attn1, mlp1, head = (op.options for op in qmodel.ops)
    assert (pe["version"], attn0["version"], attn1["version"], head["version"]) == (4, 2, 2, 2)
    assert (pe["has_pos"], pe["relu"]) == (1, 0)                                # a tokenizer, not a stem layer
    assert mlp0["version"] == mlp1["version"] == 1
    assert (head["sm_mult"], head["sm_shift"]) == (1 << 30, 1)                  # mean pooling: unused (SPEC 2.4)
    assert (pe["patch"], pe["kernel"], pe["has_cls"], head["pool"]) == (7, 7, 0, 0)
    assert pe["patches_per_pass"] == 4        # 28 px, patch 7: the attention's scope is the arena peak
    for attn in (attn0, attn1):
        assert (attn["heads"], attn["qkv_dim"], attn["qkv_rank"], attn["proj_rank"]) == (2, 48, 0, 0)
        assert (attn["qkv_t_zp"], attn["proj_t_zp"]) == (0, 0)                  # full rank: no intermediate
        # the attention's scope is the arena peak: 4 tokens a pass; full rank: nothing to keep
        assert (attn["tokens_per_pass"], attn["keep_t"]) == (4, 0)
        assert (1 << 30) <= attn["sm_mult"] < (1 << 31) and 1 <= attn["sm_shift"] <= 62
        assert _valid_multiplier(attn["ctx_mult"], attn["ctx_shift"])
    assert [(m["hidden"], m["fc1_rank"], m["fc2_rank"]) for m in (mlp0, mlp1)] == [(96, 0, 0), (96, 16, 0)]
    assert mlp0["fc1_t_zp"] == 0 and mlp1["fc2_t_zp"] == 0
    for op in qmodel.ops:
        for key in ZERO_POINT_OPTIONS[op.code]:
            assert -128 <= op.options[key] <= 127, (op.code, key)
    # the residual multiplier of block op k is s(tokens_k) / s(tokens_k+1) (SPEC 1.5)
    for k, op in enumerate(qmodel.ops[1:-1]):
        s_x, s_y = tensor[f"tokens_{k}"].scale[0], tensor[f"tokens_{k + 1}"].scale[0]
        assert _valid_multiplier(op.options["res_mult"], op.options["res_shift"])
        assert _real(op.options["res_mult"], op.options["res_shift"]) == pytest.approx(s_x / s_y, rel=2 ** -29)
        # ln_eps = round(E^2 * eps / s_x^2) with the float model's eps 1e-6 (SPEC 1.2)
        assert op.options["ln_eps"] == min(round(48 * 48 * 1e-6 / s_x ** 2), 1 << 40), (k, s_x)
    pos, t0 = tensor["patch_embed/pos"], tensor["tokens_0"]
    assert pe["pos_zp"] == pos.zero_point[0]
    assert _real(pe["pos_mult"], pe["pos_shift"]) == pytest.approx(pos.scale[0] / t0.scale[0], rel=2 ** -29)
    # the patch embedding's rq rows: s_image * s_w[o] / s(tokens_0), s_image = 1/255 (SPEC 0, 1.1)
    w, rq = tensor["patch_embed/W"], tensor["patch_embed/rq"].data
    assert [_real(int(m), int(s)) for m, s in rq] == pytest.approx(
        [s_w / 255.0 / t0.scale[0] for s_w in w.scale], rel=2 ** -29)
    for t in qmodel.tensors:
        if t.name.endswith(("/rq", "/ln")):
            assert all(_valid_multiplier(int(m), int(s)) for m, s in t.data[:, :2]), t.name


def test_the_converted_model_passes_the_kernels_prepare_checks(converted):
    from converter.qmodel import prepare_error
    assert prepare_error(converted[2]) is None


def test_tflm_parses_the_model_up_to_the_custom_op_registration(converted, capfd):
    """The wheel's TFLM (no MCUFormer kernels registered) reads the file and stops only at CUSTOM."""
    import ctypes

    from tflite_micro.python.tflite_micro import runtime

    with pytest.raises(RuntimeError, match="allocate"):
        runtime.Interpreter.from_file(str(converted[-1]), arena_size=1 << 20)
    ctypes.CDLL(None).fflush(None)
    assert "Failed to get registration from op code CUSTOM" in capfd.readouterr().err


def test_builtin_baseline_runs_in_tflm(trained, fashion_mnist):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model, _ = trained
    tflite = baseline.convert_builtin(model, fashion_mnist.x_train[:50] / 255.0, samples=50)
    m = schema.Model.GetRootAs(tflite, 0)
    assert all(m.OperatorCodes(i).BuiltinCode() != schema.BuiltinOperator.CUSTOM
               for i in range(m.OperatorCodesLength()))
    x = fashion_mnist.x_test[:100]
    out = baseline.run_builtin(tflite, quantize_images(x / 255.0))
    agree = np.mean(out.argmax(1) == model.predict(x / 255.0, verbose=0).argmax(1))
    assert agree >= 0.9, agree
    arena = baseline.tflm_arena(tflite)
    assert arena["total"] == arena["head"] + arena["tail"] > 0


# ---- bad input --------------------------------------------------------------------------

def test_unsupported_layer_is_named_with_supported_set():
    model = build_vit(TINY)
    extended = keras.Model(model.input, keras.layers.Dense(3, name="extra_dense")(model.output))
    with pytest.raises(UserError, match=r"extra_dense.*Dense.*supported layers: InputLayer, Conv2D, PatchEmbed"):
        read_weights(extended)


def test_calibration_data_of_wrong_shape():
    arch, weights = read_weights(_random_model(TINY))
    with pytest.raises(UserError, match=r"shape \(4, 32, 32, 1\).*\(N, 28, 28, 1\)"):
        calibrate(arch, weights, np.zeros((4, 32, 32, 1)), progress=False)


@pytest.mark.parametrize("damage", ["truncated", "half", "identifier", "garbage", "empty"])
def test_corrupt_tflite_is_a_user_error(converted, tmp_path, damage):
    buf = converted[-1].read_bytes()
    bad = {"truncated": buf[:-40], "half": buf[:len(buf) // 2], "identifier": buf[:4] + b"XXXX" + buf[8:],
           "garbage": bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8)), "empty": b""}[damage]
    path = tmp_path / "bad.tflite"
    path.write_bytes(bad)
    with pytest.raises(UserError, match="corrupt or truncated"):
        run_tflite(path, np.zeros((1, 28, 28, 1), np.int8))


# ---- CLI ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_convert_writes_all_outputs(trained, tmp_path):
    _, subnet = trained
    out = tmp_path / "out"
    proc = run_cli("convert", str(subnet), "--out", str(out), "--calib", "100", "--eval", "300", "--qat",
                   "--range", "auto", "--val-limit", "200")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["baseline_builtin.tflite", "model.tflite", "model_data.cc",
                                                     "model_data.h", "report.json"]
    import json
    report = json.loads((out / "report.json").read_text())
    tflite = (out / "model.tflite").read_bytes()
    assert report["flash_bytes"] == len(tflite)
    # the arena reported is the one the written file's own graph plans to (generic .tflite planner)
    from memory_model.tflite_graph import plan_graph, read_tflite
    reread = plan_graph(read_tflite(tflite), pointer_size=4, custom_scratch=dict(enumerate(scratch_bytes(TINY))))
    assert report["planned_arena_bytes"] == reread.arena_bytes
    # accuracies on 300 images are multiples of 1/300
    assert report["accuracy"]["test_images"] == 300
    for accuracy in (report["int8_accuracy"], report["accuracy"]["float_before_qat"]):
        assert accuracy * 300 == pytest.approx(round(accuracy * 300))
    assert report["quantization"]["qat_epochs"] == 1 and "tokens_0" in report["quantization"]["learned_ranges"]
    assert report["quantization"]["range_choice"]["validation_images"] == 200     # chosen after QAT
    assert report["baseline"]["tflm_arena_bytes_host"] > report["planned_arena_bytes_host"]
    cc = (out / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char mcuformer_model_data[]" in cc
    array = bytes(int(v, 16) for v in cc.split("{", 1)[1].split("}", 1)[0].replace(",", " ").split())
    assert array == tflite and f"mcuformer_model_data_len = {len(tflite)};" in cc
    assert "extern const unsigned char mcuformer_model_data[];" in (out / "model_data.h").read_text()

    again = run_cli("convert", str(subnet), "--out", str(out))
    assert_one_line_error(again, "already exists", "--force")
    assert (out / "model.tflite").read_bytes() == tflite


@pytest.mark.slow
def test_cli_data_of_another_size_is_resized_like_every_command_does(trained, tmp_path):
    _, subnet = trained
    data = tmp_path / "data.npz"
    imgs = np.zeros((20, 32, 32, 1), np.uint8)
    labels = np.zeros(20, np.int64)
    np.savez(data, x_train=imgs, y_train=labels, x_test=imgs, y_test=labels)
    out = tmp_path / "out"
    proc = run_cli("convert", str(subnet), "--out", str(out), "--data", str(data), "--calib", "10", "--no-baseline")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["quantization"]["calibration_images"] == 10 and report["accuracy"]["test_images"] == 20
    assert not list(tmp_path.glob(".out*"))


@pytest.mark.slow
def test_qat_learned_ranges_are_used_and_int8_tracks_float(trained, fashion_mnist):
    from converter import qat
    from converter.calibrate import qparams

    model, _ = trained
    initial = calibrated_ranges(*read_weights(model), fashion_mnist.x_train[:200] / 255.0, ConvertOptions(),
                                progress=False)
    finetuned, learned = qat.finetune(model, fashion_mnist.x_train[:2000] / 255.0, fashion_mnist.y_train[:2000],
                                      epochs=1, progress=False, initial_ranges=initial)
    assert sorted(learned) == sorted(["logits"] + [f"tokens_{k}" for k in range(2 * TINY.depth + 1)])
    changed = [not np.array_equal(a, b) for a, b in zip(model.get_weights(), finetuned.get_weights())]
    assert any(changed)
    _, _, qmodel, _ = quantize_model(finetuned, fashion_mnist.x_train[:200] / 255.0, progress=False,
                                     learned_ranges=learned)
    for name, (lo, hi) in learned.items():
        t = qmodel.tensors[qmodel.index(name)]
        assert t.scale[0] == qparams(lo, hi, False).scale and t.zp == qparams(lo, hi, False).zero_point
    x, y = fashion_mnist.x_test[:2000], fashion_mnist.y_test[:2000]
    float_acc = np.mean(finetuned.predict(x / 255.0, verbose=0).argmax(1) == y)
    int8_acc = np.mean(run(qmodel, quantize_images(x / 255.0)).argmax(1) == y)
    assert abs(float_acc - int8_acc) <= 0.01, (float_acc, int8_acc)


# ---- --range auto -------------------------------------------------------------------------

def test_range_auto_never_scores_an_image_it_calibrated_on():
    from converter.range_choice import split_for_auto

    n = 1000
    images = np.arange(n, dtype=np.uint16).view(np.uint8).reshape(n, 2, 1, 1)    # image i holds i
    labels = np.arange(n) % 10
    x_fit, y_fit, x_val, y_val = split_for_auto(images, labels, val_images=60)
    ids = lambda x: set(x.reshape(len(x), 2).copy().view(np.uint16).ravel().tolist())
    assert len(x_val) == len(y_val) == 60 and len(x_fit) == len(y_fit) == 900
    assert not ids(x_fit) & ids(x_val)
    with pytest.raises(UserError, match="--range percentile"):
        split_for_auto(images[:999], labels[:999], val_images=60)


@pytest.mark.slow
def test_range_auto_picks_the_method_whose_int8_model_is_best_on_validation(trained, fashion_mnist):
    from converter.range_choice import CANDIDATES, choose, split_for_auto

    model, _ = trained
    x_fit, _, x_val, y_val = split_for_auto(fashion_mnist.x_train, fashion_mnist.y_train, val_images=500)
    calib = x_fit[:200] / 255.0
    choice = choose(*read_weights(model), calib, x_val, y_val)
    expected = []
    for method, percentile in CANDIDATES:       # each candidate converted on its own, as --range <method> does
        options = ConvertOptions(method=method, percentile=percentile)
        _, _, qmodel, _ = quantize_model(model, calib, options, progress=False)
        expected.append(np.mean(run(qmodel, quantize_images(x_val / 255.0)).argmax(1) == y_val))
    assert [s["val_int8_top1"] for s in choice["scores"]] == pytest.approx(expected, abs=0)
    first_best = CANDIDATES[int(np.argmax(expected))]
    assert (choice["method"], choice["percentile"]) == first_best and choice["validation_images"] == 500


@pytest.mark.slow
def test_cli_range_auto_reports_its_choice_and_refuses_a_dataset_too_small(trained, tmp_path):
    _, subnet = trained
    out = tmp_path / "out"
    proc = run_cli("convert", str(subnet), "--out", str(out), "--range", "auto", "--val-limit", "300",
                   "--calib", "100", "--eval", "200", "--no-baseline")
    assert proc.returncode == 0, proc.stderr[-2000:]
    quantization = json.loads((out / "report.json").read_text())["quantization"]
    choice = quantization["range_choice"]
    assert choice["validation_images"] == 300 and len(choice["scores"]) == 4
    best = max(s["val_int8_top1"] for s in choice["scores"])
    assert quantization["method"] == choice["method"] == next(s["method"] for s in choice["scores"]
                                                                 if s["val_int8_top1"] == best)
    assert "--range auto: int8 top-1 on 300 validation images" in proc.stdout and "chose" in proc.stdout

    data = tmp_path / "small.npz"
    imgs = np.zeros((200, 28, 28, 1), np.uint8)
    labels = np.arange(200) % 10
    np.savez(data, x_train=imgs, y_train=labels, x_test=imgs[:20], y_test=labels[:20])
    small = run_cli("convert", str(subnet), "--out", str(tmp_path / "small"), "--data", str(data),
                    "--range", "auto", "--no-baseline")
    assert_one_line_error(small, "--range auto", "200 training images", "--range percentile")
    assert not (tmp_path / "small").exists()


def test_images_of_wrong_shape_for_the_reference(converted):
    with pytest.raises(UserError, match=r"expects \(N, 28, 28, 1\)"):
        run_tflite(converted[-1], np.zeros((2, 32, 32, 1), np.int8))


def test_image_folder_is_resized_to_the_model_input(trained, tmp_path):
    from PIL import Image

    from converter.convert import convert

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / "imgs" / split / name).mkdir(parents=True)
            for k in range(6):
                pixels = rng.integers(0, 256, (40, 40), dtype=np.uint8)
                Image.fromarray(pixels, "L").save(tmp_path / "imgs" / split / name / f"{k}.png")
    _, subnet = trained
    report = convert(subnet, tmp_path / "out", str(tmp_path / "imgs"), ConvertOptions(calib=8, baseline=False),
                     progress=False)
    assert report["accuracy"]["test_images"] == 12 and report["quantization"]["calibration_images"] == 8
    assert (tmp_path / "out" / "model.tflite").stat().st_size == report["flash_bytes"]


def test_a_nearly_dead_channel_with_a_bias_does_not_overflow_the_accumulator():
    """A low-rank factor's output column of tiny weights with a real bias (seen in a 50-epoch model): its int8
    scale is floored so that the int32 bias leaves the accumulator room, and the channel still outputs its
    bias; without the floor the bias saturated int32 and the reference refused the model."""
    from converter.quantize import build_qmodel
    from tests.synthetic_models import random_weights

    config = TINY.replace(fc2_rank=[8, 0])
    weights = random_weights(config, np.random.default_rng(0))
    fc2 = weights["block0_mlp"]["fc2"]
    fc2["u"][:, 0], fc2["bias"][0] = 1e-9, 0.5
    images = np.random.default_rng(1).random((16, 28, 28, 1))
    ranges = calibrated_ranges(config, weights, images, ConvertOptions(), progress=False)
    qmodel = build_qmodel(config, weights, ranges)
    u = qmodel.tensors[qmodel.index("block0_mlp/fc2/U/W")]
    bias = qmodel.tensors[qmodel.index("block0_mlp/fc2/U/bias")].data.astype(np.int64)
    assert abs(bias[0]) + 2 * 128 * 127 * 8 <= 2 ** 31 - 1 and u.scale[0] > 1e-9 / 127
    logits = run(qmodel, quantize_images(images))
    out = qmodel.tensors[qmodel.output]
    float_logits = forward(config, weights, images)
    assert np.abs((logits.astype(np.float64) - out.zp) * out.scale[0] - float_logits).max() < 0.1
