"""One contract for validity: the reference interpreter, `verify` without TFLM and
`build` before compiling reject exactly the models the kernels' Prepare rejects,
each with one line naming the op index, the op and the field; where a TFLM tree
exists, the host runner's Prepare gives the same verdict."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from common.errors import UserError
from keras_supernet.arch import ArchConfig

# op 0 patch embedding, 1/3 attention (block 1 low-rank qkv), 2/4 MLP (block 1 low-rank fc1), 5 head
CONFIG = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10, num_heads=(2, 2),
                    qkv_dim=(32, 32), mlp_hidden=(64, 64), qkv_rank=(0, 8), fc1_rank=(0, 16))


@pytest.fixture(scope="module")
def qmodel():
    """The converter's int8 model of a random-weight ViT (weights like a trained one's)."""
    from converter.convert import quantize_model
    from keras_supernet.static_vit import build_vit

    model = build_vit(CONFIG)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0, 0.05, w.shape).astype(np.float32) + (1.0 if "gamma" in w.name else 0.0))
    arch, _, q, plan = quantize_model(model, rng.random((16, 28, 28, 1)), progress=False)
    return arch, q, plan


def _set_option(op, name, value):
    def corrupt(q):
        q.ops[op].options[name] = value
    return corrupt


def _drop_option(op, name):
    def corrupt(q):
        del q.ops[op].options[name]
    return corrupt


def _set_row(op, what, row, column, value):
    """Sets one entry of the op's first tensor named */what (an rq or ln table)."""
    def corrupt(q):
        index = next(i for i in q.ops[op].inputs if q.tensors[i].name.endswith("/" + what))
        q.tensors[index].data = q.tensors[index].data.copy()
        q.tensors[index].data[row, column] = value
    return corrupt


def _replace_tensor(op, what, data):
    def corrupt(q):
        index = next(i for i in q.ops[op].inputs if q.tensors[i].name.endswith("/" + what))
        q.tensors[index].data = data
        q.tensors[index].shape = data.shape
        q.tensors[index].dtype = data.dtype.name
    return corrupt


def _option_bytes(op, name, value):
    """Rewrites the op's FlexBuffer options in the file (same length) with name = value, which the
    writer would not write (a bool), or with zero bytes when name is None."""
    def corrupt(q):
        from flatbuffers import flexbuffers

        old = flexbuffers.Dumps({k: int(v) for k, v in q.ops[op].options.items()})
        new = bytes(len(old)) if name is None else flexbuffers.Dumps({**q.ops[op].options, name: value})
        assert len(new) == len(old)

        def patch(buf):
            assert buf.count(old) == 1
            return buf.replace(old, new)
        return patch
    return corrupt


def _zero_point(name, value):
    def corrupt(q):
        q.tensors[q.index(name)].zero_point = [value]
    return corrupt


# name: (corruption, fragments the one line must hold)
CORRUPTIONS = {
    "qkv_rank_13_full_rank": (_set_option(1, "qkv_rank", 13), ["op 1 (MCUF_ATTENTION)", "qkv_rank 13", "inputs"]),
    "qkv_rank_13_low_rank": (_set_option(3, "qkv_rank", 13), ["op 3 (MCUF_ATTENTION)", "linear qkv", "rank 13"]),
    "rq_multiplier_below_2^30": (_set_row(2, "rq", 5, 0, 1 << 29),
                                 ["op 2 (MCUF_MLP)", "linear fc1", "(rq) row 5", "invalid multiplier"]),
    "ln_shift_31": (_set_row(5, "ln", 0, 1, 31), ["op 5 (MCUF_HEAD)", "(ln) row 0", "invalid multiplier"]),
    "res_shift_out_of_range": (_set_option(2, "res_shift", 31), ["op 2 (MCUF_MLP)", "'res_shift'", "[-31, 30]"]),
    "pool_mult_invalid": (_set_option(5, "pool_mult", 5), ["op 5 (MCUF_HEAD)", "'pool_mult'", "not a valid"]),
    "version_2": (_set_option(4, "version", 2), ["op 4 (MCUF_MLP)", "'version' is 2"]),
    "patch_embed_version_1": (_set_option(0, "version", 1), ["op 0 (MCUF_PATCH_EMBED)", "'version' is 1"]),
    "patches_per_pass_3": (_set_option(0, "patches_per_pass", 3),
                           ["op 0 (MCUF_PATCH_EMBED)", "patches_per_pass", "1 or 4"]),
    "kernel_below_patch": (_set_option(0, "kernel", 6), ["op 0 (MCUF_PATCH_EMBED)", "'kernel' (6)", "'patch' (7)"]),
    "heads_not_dividing_qkv_dim": (_set_option(1, "heads", 3), ["op 1 (MCUF_ATTENTION)", "'qkv_dim'", "'heads'"]),
    "option_missing": (_drop_option(0, "pos_zp"), ["op 0 (MCUF_PATCH_EMBED)", "'pos_zp' is missing"]),
    "option_not_an_integer": (_option_bytes(0, "has_cls", True), ["op 0 (MCUF_PATCH_EMBED)", "'has_cls'", "integer"]),
    "options_zeroed": (_option_bytes(4, None, None), ["op 4 (MCUF_MLP)", "not a valid FlexBuffer map"]),
    "gelu_lut_255_entries": (_replace_tensor(2, "gelu_lut", np.zeros(255, np.int8)),
                             ["op 2 (MCUF_MLP)", "(gelu_lut) must be int8 [256]"]),
    "bias_int8": (_replace_tensor(5, "bias", np.zeros(10, np.int8)), ["op 5 (MCUF_HEAD)", "(bias) must be int32 [10]"]),
    "token_zero_point_200": (_zero_point("tokens_1", 200), ["op 1 (MCUF_ATTENTION)", "output zero point 200"]),
}


def _written(arch, q, plan, folder, patch=None):
    """A model folder as `mcuformer convert` writes it (its own report), for the QModel `q` (its bytes patched)."""
    from converter.convert import _report
    from converter.tflite_writer import to_flatbuffer
    from deploy import app

    folder.mkdir()
    tflite = to_flatbuffer(q)
    tflite = patch(tflite) if patch else tflite
    (folder / "model.tflite").write_bytes(tflite)
    app.model_array_cc(folder / "model.tflite", folder)
    (folder / "report.json").write_text(json.dumps(_report(arch, q, plan, tflite)))
    return folder


def _corrupted(qmodel, name, folder):
    arch, q, plan = qmodel
    bad = copy.deepcopy(q)
    patch = CORRUPTIONS[name][0](bad)
    return _written(arch, bad, plan, folder, patch)


def _without_tflm(monkeypatch, tmp_path):
    """No TFLM tree: an empty project cache and no TFLM_ROOT."""
    monkeypatch.setenv("MCUFORMER_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TFLM_ROOT", "")


def _assert_one_line(message: str, fragments):
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_the_valid_model_passes_every_check(qmodel, tmp_path, monkeypatch):
    from converter.interpreter import check_tflite, run_tflite
    from deploy.verify import verify

    _without_tflm(monkeypatch, tmp_path)
    folder = _written(*qmodel, tmp_path / "model")
    check_tflite(folder / "model.tflite")
    assert run_tflite(folder / "model.tflite", np.zeros((2, 28, 28, 1), np.int8)).shape == (2, 10)
    assert "skipped" in verify(folder, images=2)["host"]


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_reference_and_verify_without_tflm_reject_with_one_line(qmodel, tmp_path, monkeypatch, name):
    from converter.interpreter import run_tflite
    from deploy.verify import verify

    _without_tflm(monkeypatch, tmp_path)
    folder = _corrupted(qmodel, name, tmp_path / "model")
    fragments = CORRUPTIONS[name][1]
    with pytest.raises(UserError) as raised:
        run_tflite(folder / "model.tflite", np.zeros((1, 28, 28, 1), np.int8))
    _assert_one_line(str(raised.value), fragments + ["Prepare"])
    with pytest.raises(UserError) as raised:
        verify(folder, images=2)
    _assert_one_line(str(raised.value), fragments)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_build_refuses_before_compiling(qmodel, tmp_path, monkeypatch, name):
    from common.boards import load_board
    from deploy import app, board_build, tflm

    def never(*args, **kwargs):
        raise AssertionError("build_for_board went past the model check")

    monkeypatch.setattr(app, "target_for", lambda *args, **kwargs: None)   # any toolchain
    monkeypatch.setattr(app, "build_app", never)
    monkeypatch.setattr(tflm, "ensure_tflm", never)
    folder = _corrupted(qmodel, name, tmp_path / "model")
    with pytest.raises(UserError) as raised:
        board_build.build_for_board(folder, load_board("stm32f746"))
    _assert_one_line(str(raised.value), CORRUPTIONS[name][1])
    assert not (folder / "build").exists()


@pytest.mark.parametrize("name", ["qkv_rank_13_full_rank", "rq_multiplier_below_2^30"])
def test_cli_verify_without_tflm_and_build_refuse_with_one_line(qmodel, tmp_path, name):
    from tests.tflm_fixtures import arm_or_skip

    folder = _corrupted(qmodel, name, tmp_path / "model")
    env = {"MCUFORMER_CACHE": str(tmp_path / "empty-cache"), "TFLM_ROOT": ""}
    assert_one_line_error(run_cli("verify", str(folder), "--images", "2", env=env), *CORRUPTIONS[name][1])
    arm_or_skip()
    assert_one_line_error(run_cli("build", str(folder), "--board", "stm32f746", env=env), *CORRUPTIONS[name][1])
    assert not (folder / "build").exists()


@pytest.mark.tflm
@pytest.mark.parametrize("name", [None] + sorted(CORRUPTIONS))
def test_host_runner_prepare_gives_the_same_verdict(qmodel, tmp_path, name):
    """TFLM's MicroInterpreter with the MCUFormer kernels: Prepare fails exactly where the check does."""
    from converter.interpreter import check_tflite
    from deploy.host import run_host
    from tests.tflm_fixtures import tflm_root_or_skip

    root = tflm_root_or_skip()
    folder = _written(*qmodel, tmp_path / "model") if name is None else _corrupted(qmodel, name, tmp_path / "model")
    path, image = folder / "model.tflite", np.zeros((1, 28, 28, 1), np.int8)
    try:
        check_tflite(path)
        python_rejects = False
    except UserError:
        python_rejects = True
    try:
        run_host(root, path, image)
        tflm_rejects = False
    except UserError as exc:
        tflm_rejects = True
        assert "MCUF_" in str(exc), str(exc)       # the kernel's own logged line
    assert python_rejects == tflm_rejects == (name is not None)
