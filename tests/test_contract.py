"""tflm_ops/contract.py on hand-worked values: scratch sizes, the multiplier rule, options, the input rule."""
import numpy as np
import pytest

from tflm_ops import contract


def test_scratch_bytes_of_mcuformer_shaped_ops():
    """The scratch bytes the C kernels requested for MCUFormer-shaped ops (tflm_ops/README.md table):
    145 tokens of 192, 3 heads of 64, MLP 768, patch 20 of a 240x240x3 image."""
    attention = dict(tokens=145, embed=192, qkv_dim=192, proj_rank=0)
    # strip 12 * 192, int32 accumulators of 4 patches, 256 window columns int8 and packed int16 for 4 patches
    patch_embed = dict(patch=20, kernel=20, grid_w=12, embed=192, channels=3)
    assert contract.scratch_bytes("MCUF_PATCH_EMBED", patches_per_pass=4, **patch_embed) == 2304 + 3072 + 256 + 2048
    # one patch a pass: the strip and the whole 20 * 20 * 3 window, int8
    assert contract.scratch_bytes("MCUF_PATCH_EMBED", patches_per_pass=1, **patch_embed) == 2304 + 1200
    # a 7 x 7 window of stride 4 going up (E 32 > 16): strip 7 * 32, halo 2 rows of 28, window 49
    conv = dict(patch=4, kernel=7, grid_w=7, embed=32, channels=1)
    assert contract.scratch_bytes("MCUF_PATCH_EMBED", patches_per_pass=1, **conv) == 224 + 56 + 49
    assert contract.scratch_bytes("MCUF_PATCH_EMBED", patches_per_pass=4, **conv) == 224 + 56 + 512 + 52 + 416
    # K and V 145 * 192 each, then for B tokens: h packed 2B * 192, q B * 192, q and ctx packed 2B * 192 each,
    # scores 4B * 145, probabilities packed 2B * 148; rank 48: t packed 2B * 48, kept t 145 * 48
    kv, lean, fast = 2 * 145 * 192, 4, 8
    per_pass = lambda b: 2 * b * 192 + b * 192 + 2 * (2 * b * 192) + 4 * b * 145 + 2 * b * 148  # noqa: E731
    assert contract.scratch_bytes("MCUF_ATTENTION", qkv_rank=0, tokens_per_pass=lean, keep_t=0,
                                  **attention) == kv + per_pass(lean) == 64560
    assert contract.scratch_bytes("MCUF_ATTENTION", qkv_rank=0, tokens_per_pass=fast, keep_t=1,
                                  **attention) == kv + per_pass(fast)            # nothing to keep at full rank
    assert contract.scratch_bytes("MCUF_ATTENTION", qkv_rank=48, tokens_per_pass=lean, keep_t=0,
                                  **attention) == kv + per_pass(lean) + 2 * lean * 48
    assert contract.scratch_bytes("MCUF_ATTENTION", qkv_rank=48, tokens_per_pass=fast, keep_t=1,
                                  **attention) == kv + 145 * 48 + per_pass(fast) + 2 * fast * 48 == 81168
    assert contract.scratch_bytes("MCUF_MLP", embed=192, hidden=768, fc1_rank=0, fc2_rank=0) == 7872
    assert contract.scratch_bytes("MCUF_MLP", embed=192, hidden=768, fc1_rank=0, fc2_rank=96) == 8640
    assert contract.scratch_bytes("MCUF_HEAD", tokens=145, embed=192, pool=contract.POOL_MEAN) == 1152
    # sequence pooling adds the int32 scores of the 145 tokens: 1152 + 4 * 145
    assert contract.scratch_bytes("MCUF_HEAD", tokens=145, embed=192, pool=contract.POOL_SEQ) == 1732


def test_segments_align_to_4_and_empty_ones_take_no_space():
    assert contract.layout_bytes([5, 0, 3]) == 11          # 5 -> 8 + 3
    assert contract.layout_bytes([5, 3, 0]) == 11          # a trailing empty segment adds no padding
    assert contract.layout_bytes([1, 1, 1]) == 9           # 0..1, 4..5, 8..9
    # h 5 -> 8, then int16 x 4 tokens of 8 (E 5), 4 (rank 2) and 4 (hidden 3) columns
    assert contract.scratch_bytes("MCUF_MLP", embed=5, hidden=3, fc1_rank=2, fc2_rank=0) == 8 + 64 + 32 + 32


def test_multiplier_rule_edges():
    valid = [(0, 0), (1 << 30, -31), (-(1 << 30), 30), ((1 << 31) - 1, 0), (-(1 << 31) + 1, 0)]
    invalid = [((1 << 30) - 1, 0), (1 << 31, 0), (-(1 << 31), 0), (1 << 30, 31), (1 << 30, -32), (0, 31)]
    assert [contract.valid_multiplier(m, s) for m, s in valid] == [True] * len(valid)
    assert [contract.valid_multiplier(m, s) for m, s in invalid] == [False] * len(invalid)
    m, s = np.array([m for m, _ in valid + invalid]), np.array([s for _, s in valid + invalid])
    assert contract.valid_multiplier(m, s).tolist() == [True] * len(valid) + [False] * len(invalid)


def test_input_rule_is_pixel_minus_128():
    assert contract.quantize_input(np.array([0, 1, 127.5, 128, 255], np.float64)).tolist() == [-128, -127, 0, 0, 127]
    assert contract.quantize_input(np.array([0, 128, 255], np.uint8)).tolist() == [-128, 0, 127]
    assert contract.quantize_input(np.array([-3.0, 300.0])).tolist() == [-128, 127]
    assert (contract.INPUT_SCALE, contract.INPUT_ZERO_POINT) == (1 / 255, -128)


def test_input_counts():
    full, low = {"qkv_rank": 0, "proj_rank": 0}, {"qkv_rank": 8, "proj_rank": 4}
    assert contract.input_count("MCUF_PATCH_EMBED", {"has_pos": 1, "has_cls": 0}) == 5
    assert contract.input_count("MCUF_PATCH_EMBED", {"has_pos": 1, "has_cls": 1}) == 6
    assert contract.input_count("MCUF_PATCH_EMBED", {"has_pos": 0, "has_cls": 0}) == 4     # a stem layer
    assert contract.input_count("MCUF_ATTENTION", full) == 8 and contract.input_count("MCUF_ATTENTION", low) == 14
    assert contract.input_count("MCUF_MLP", {"fc1_rank": 0, "fc2_rank": 3}) == 12
    assert contract.input_count("MCUF_HEAD", {"pool": contract.POOL_MEAN}) == 5
    assert contract.input_count("MCUF_HEAD", {"pool": contract.POOL_SEQ}) == 6     # + score


def test_make_options_names_every_option_once():
    options = contract.make_options("MCUF_HEAD", pool=1, ln_eps=3, ln_zp=-2, pool_zp=-2, pool_mult=0, pool_shift=0,
                                    sm_mult=1 << 30, sm_shift=1)
    assert list(options) == ["version", "pool", "ln_eps", "ln_zp", "pool_zp", "pool_mult", "pool_shift", "sm_mult",
                             "sm_shift"]
    assert options["version"] == 2 and contract.options_error("MCUF_HEAD", options) is None
    with pytest.raises(ValueError, match=r"missing \['pool_shift'\], unknown \['pool_shfit'\]"):
        contract.make_options("MCUF_HEAD", pool=1, ln_eps=3, ln_zp=-2, pool_zp=-2, pool_mult=0, pool_shfit=0,
                              sm_mult=1 << 30, sm_shift=1)


def test_options_error_names_the_field():
    good = contract.make_options("MCUF_PATCH_EMBED", patch=4, kernel=4, has_cls=1, patches_per_pass=4, has_pos=1,
                                 relu=0, pos_zp=0, pos_mult=1 << 30, pos_shift=0)
    assert contract.options_error("MCUF_PATCH_EMBED", good) is None
    cases = {"patch": (4097, "'patch' is 4097, outside [1, 4096]"), "has_cls": (2, "'has_cls' is 2"),
             "pos_zp": (-129, "'pos_zp' is -129"), "pos_mult": (1 << 29, "'pos_mult', 'pos_shift'"),
             "version": (3, "'version' is 3; the kernels implement version 4"), "relu": (2, "'relu' is 2"),
             "has_pos": (-1, "'has_pos' is -1"),
             "patches_per_pass": (2, "'patches_per_pass' is 2; the kernel implements 1 or 4"),
             "kernel": (3, "'kernel' (3) is smaller than 'patch' (4)")}
    for key, (value, message) in cases.items():
        assert message in contract.options_error("MCUF_PATCH_EMBED", {**good, key: value}), key
    assert contract.options_error("MCUF_PATCH_EMBED", [1, 2]) == "custom options are not a valid FlexBuffer map"
    assert "'pos_zp' is missing" in contract.options_error("MCUF_PATCH_EMBED", {**good, "pos_zp": None})
    assert "not an integer" in contract.options_error("MCUF_PATCH_EMBED", {**good, "has_cls": False})
