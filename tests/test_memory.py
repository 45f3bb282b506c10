"""The memory model: TFLM planner port, the custom-op graph plan and its techniques."""
import random

import pytest

from keras_supernet import arch
from memory_model.greedy_planner import Buffer, any_overlap, maximum_memory_size, plan_offsets, tensor_lifetimes
from memory_model.memory import (CODE_FLASH_BYTES, FB_FIXED, FB_PER_CONSTANT, FB_PER_OP, FB_PER_STEM_LAYER,
                                 Techniques, activation_bytes, constant_tensors, custom_graph_plan, evaluate,
                           attention_options, head_bytes, model_flash_bytes, patches_per_pass,
                           scratch_bytes)


def _plan(buffers):
    offsets = plan_offsets(buffers)
    return offsets, maximum_memory_size(buffers, offsets)


def test_greedy_matches_tflm_unit_test_medium():
    # greedy_memory_planner_test.cc: TestGreedyMedium
    buffers = [Buffer(10, 0, 1), Buffer(20, 1, 2), Buffer(30, 2, 3), Buffer(40, 3, 4), Buffer(50, 0, 1)]
    offsets, head = _plan(buffers)
    assert offsets == [50, 70, 40, 0, 0]
    assert head == 90
    assert not any_overlap(buffers, offsets)


def test_greedy_matches_tflm_unit_test_overlap_case():
    offsets, head = _plan([Buffer(100, 0, 1), Buffer(50, 2, 3), Buffer(20, 1, 2)])
    assert head == 120


def test_offline_and_online_buffers_match_tflm_allocator_test():
    # micro_allocator_test.cc: OfflinePlannerOfflineOnline (5 float tensors of 48 B,
    # t0 subgraph input, node0 (t0, t1) -> t2, node1 t2 -> (t3, t4) outputs).
    lifetimes = tensor_lifetimes(5, inputs=[0], outputs=[3, 4], operators=[([0, 1], [2]), ([2], [3, 4])])
    offline = [0, 48, -1, 0, -1]
    buffers = [Buffer(48, f, l, o) for (f, l), o in zip(lifetimes, offline)]
    offsets, _ = _plan(buffers)
    assert offsets == [0, 48, 96, 0, 48]


def _random_config(rng):
    depth = rng.randint(1, 5)
    e = rng.choice([16, 32, 48, 64])
    heads = [rng.choice([1, 2, 4]) for _ in range(depth)]
    qkv = [h * rng.choice([8, 16]) for h in heads]
    mlp = [rng.choice([32, 64, 128, 192]) for _ in range(depth)]

    def ranks(n_in, n_out_list):
        return [rng.choice([0, 0, min(8, n_in, n_out)]) for n_out in n_out_list]
    stem = rng.choice([[], [], [[3, 2, 8]], [[3, 1, 8], [3, 2, 16]]])     # a 28 x 28 map for the patch embedding
    return arch.ArchConfig(image_size=28 * 2 ** len(stem[-1:]), channels=rng.choice([1, 3]), stem=stem,
                           patch_size=rng.choice([2, 4, 7, 14]),
                           embed_dim=e, num_classes=10, num_heads=heads, qkv_dim=qkv, mlp_hidden=mlp,
                           qkv_rank=ranks(e, [3 * q for q in qkv]), fc1_rank=ranks(e, mlp),
                           pool=rng.choice(["mean", "cls"]))


ALL_TECHNIQUES = [Techniques(True, pd, to) for pd in (False, True) for to in (False, True)]


@pytest.mark.parametrize("techniques", ALL_TECHNIQUES, ids=lambda t: t.describe())
def test_custom_plan_is_a_valid_tflm_plan(techniques):
    rng = random.Random(0)
    for _ in range(40):
        config = _random_config(rng)
        plan = custom_graph_plan(config, techniques)
        offsets = dict(zip(plan.tensor_names, plan.tensor_offsets))
        tokens = [o for name, o in offsets.items() if name.startswith("tokens_")]
        feature_maps = [o for name, o in offsets.items() if name.startswith("stem")] + tokens[:1]
        if techniques.token_overwrite:
            assert len(set(tokens)) == 1
        if techniques.patch_decomposition:
            assert set(feature_maps) == {offsets["image"]}
        else:
            assert offsets["image"] not in feature_maps[:1]
        # No two live buffers (tensors that do not legitimately alias, scratch) share bytes: activation k
        # is op k's input and op k-1's output, the logits the last op's output.
        n_ops = len(plan.tensor_names) - 1
        live = [(o, s, k, k) for k, (o, s) in enumerate(zip(plan.tensor_offsets[1:-1], plan.tensor_bytes[1:-1]), 1)]
        live += [(plan.tensor_offsets[0], plan.tensor_bytes[0], 0, 0), (plan.tensor_offsets[-1], config.num_classes,
                                                                          n_ops, n_ops)]
        live += [(o, s, op + 1, op + 1) for op, (o, s) in enumerate(zip(plan.scratch_offsets, plan.scratch_bytes))]
        buffers = [Buffer(s, f, l) for _, s, f, l in live]
        assert not any_overlap(buffers, [o for o, *_ in live])
        assert plan.head_bytes >= max(o + s for o, s, *_ in live)


def test_techniques_reduce_the_deit_tiny_head():
    config = arch.deit_tiny()
    heads = {t: custom_graph_plan(config, t).head_bytes for t in ALL_TECHNIQUES}
    everything = heads[Techniques()]
    image = 224 * 224 * 3
    assert everything == min(heads.values())
    # With both techniques the peak is the image plus the patch embedding's strip scratch.
    assert everything == image + (scratch_bytes(config)[0] + 15) // 16 * 16
    assert heads[Techniques(True, False, False)] > everything


def test_patch_embedding_takes_four_patches_a_pass_only_where_the_arena_allows():
    # DeiT-Tiny: the peak is the image plus the patch embedding's scratch, so one patch a pass:
    # the strip 14 * 192 and one 16 * 16 * 3 window
    deit = arch.deit_tiny()
    assert patches_per_pass(deit) == 1
    assert scratch_bytes(deit)[0] == 14 * 192 + 768 < scratch_bytes(deit, 4)[0]
    assert custom_graph_plan(deit).head_bytes == 224 * 224 * 3 + 14 * 192 + 768
    # 28 px, patch 7: the patch embedding's scope stays below the peak with 4 patches a pass
    small = arch.ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10,
                            num_heads=[1, 2], qkv_dim=[16, 32], mlp_hidden=[64, 32])
    plan = custom_graph_plan(small)
    assert patches_per_pass(small) == 4 and plan.scratch_bytes[0] == scratch_bytes(small, 4)[0]
    assert plan.scratch_offsets[0] + (plan.scratch_bytes[0] + 15) // 16 * 16 < plan.head_bytes


def test_techniques_must_be_consistent():
    with pytest.raises(ValueError):
        Techniques(operator_integration=False)
    assert Techniques.off().describe() == "off (builtin ops)"


def test_scratch_sizes_follow_spec_align4_segments():
    config = arch.fmnist_small()
    sizes = scratch_bytes(config)
    t, e, d = config.num_tokens, config.embed_dim, config.qkv_dim[0]
    ceil4 = lambda n: (n + 3) // 4 * 4                                      # noqa: E731
    # strip, int32 accumulators of 4 patches, a chunk of at most 256 window columns and its packed copy
    chunk = min(config.patch_dim, 256)
    assert sizes[0] == ceil4(config.grid * e) + 4 * 4 * e + ceil4(chunk) + 2 * 4 * ceil4(chunk)
    # the attention is this model's arena peak: 4 tokens a pass (nothing to keep at full rank)
    assert attention_options(config, 1) == {"tokens_per_pass": 4, "keep_t": 0}
    # K, V, packed h, q of 4 rows, packed q and ctx, int32 scores of 4 rows, packed probabilities
    attention = 2 * ceil4(t * d) + 8 * ceil4(e) + ceil4(4 * d) + 2 * 8 * ceil4(d) + 16 * t + 8 * ceil4(t)
    assert sizes[1] == attention
    assert sizes[2] == ceil4(e) + 2 * 4 * ceil4(e) + 2 * 4 * ceil4(config.mlp_hidden[0])   # h, packed h, packed g
    assert sizes[-1] == e + 4 * e + e
    low = config.replace(qkv_rank=[5] * 4)
    assert attention_options(low, 1) == {"tokens_per_pass": 4, "keep_t": 0}   # keeping t would raise the peak
    assert scratch_bytes(low)[1] == attention + 8 * ceil4(5)          # packed rank-5 intermediate
    # kept: the rank-5 intermediate of all t tokens
    assert scratch_bytes(low, attention=(4, 1))[1] == attention + 8 * ceil4(5) + ceil4(t * 5)


def test_attention_takes_eight_tokens_and_keeps_t_only_where_the_arena_allows():
    # DeiT-Tiny with rank-48 qkv/proj: the peak is the image plus the patch embedding's scratch, far above
    # the attention's, so 8 tokens a pass and the kept intermediate (196 tokens * 48 B) cost no arena
    deit = arch.deit_tiny()
    low = deit.replace(qkv_rank=[48] * deit.depth, proj_rank=[48] * deit.depth)
    assert attention_options(low, 0) == {"tokens_per_pass": 8, "keep_t": 1}
    assert attention_options(deit, 0) == {"tokens_per_pass": 8, "keep_t": 0}        # nothing to keep
    assert deit.num_tokens == 196 and scratch_bytes(low)[1] == scratch_bytes(low, attention=(8, 0))[1] + 196 * 48
    assert custom_graph_plan(low).head_bytes == 224 * 224 * 3 + 14 * 192 + 768
    # 28 px, patch 7, E 32: the attention's scope is the peak, so the lean variant
    small = arch.ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10,
                            num_heads=[1, 2], qkv_dim=[16, 32], mlp_hidden=[64, 32], qkv_rank=[4, 4])
    assert attention_options(small, 1) == {"tokens_per_pass": 4, "keep_t": 0}
    assert scratch_bytes(small, attention=(8, 1))[3] > scratch_bytes(small)[3]


@pytest.mark.parametrize("techniques", ALL_TECHNIQUES, ids=lambda t: t.describe())
def test_fast_head_equals_the_full_tflm_plan(techniques):
    rng = random.Random(1)
    configs = [_random_config(rng) for _ in range(150)] + [arch.deit_tiny(), arch.mcuformer_shape()]
    # num_classes larger than the token buffer puts logits first in the plan
    configs.append(arch.ArchConfig(image_size=8, channels=1, patch_size=4, embed_dim=8, num_classes=1000,
                                   num_heads=[1], qkv_dim=[8], mlp_hidden=[8]))
    for config in configs:
        assert head_bytes(config, techniques) == custom_graph_plan(config, techniques).head_bytes


def test_flash_by_layer_equals_the_tensor_list():
    rng = random.Random(2)
    for _ in range(50):
        config = _random_config(rng)
        consts = constant_tensors(config)
        data = sum((b + 15) // 16 * 16 for b, _ in consts)
        stem = len(config.stem)
        expected = (data + FB_PER_CONSTANT * (len(consts) - 3 * stem) + FB_PER_OP * (2 * config.depth + 2)
                    + FB_PER_STEM_LAYER * stem + FB_FIXED)
        assert model_flash_bytes(config) == expected
        # int8 weights dominate: at least one byte per weight parameter
        assert model_flash_bytes(config) > sum(b for b, c in consts if c)


def test_tail_counts_every_tensor_and_op():
    config = arch.fmnist_small()
    low = config.replace(qkv_rank=[4] * 4)
    sizes = {4: (12, 32), 8: (24, 64)}            # TfLiteEvalTensor, NodeAndRegistration
    for pointer, (eval_tensor, node) in sizes.items():
        # 4 low-rank linears add 3 constant tensors each; alignment padding is below 16 B
        delta = custom_graph_plan(low).tail_bytes(pointer) - custom_graph_plan(config).tail_bytes(pointer)
        assert 12 * eval_tensor - 16 < delta <= 12 * eval_tensor + 16
    assert custom_graph_plan(config).tail_bytes(8) > custom_graph_plan(config).tail_bytes(4)


def test_evaluate_prices_a_subnet_with_the_full_planner_and_the_flash_model():
    """`evaluate` (the search's fast path) against the full planner and the per-tensor flash sum."""
    rng = random.Random(3)
    for config in [_random_config(rng) for _ in range(100)]:
        cost = evaluate(config)
        plan = custom_graph_plan(config)
        assert cost.sram == plan.required_arena_bytes(pointer_size=4)
        assert cost.arena_used == plan.arena_bytes(pointer_size=4) == cost.head + cost.tail
        assert cost.flash - CODE_FLASH_BYTES == model_flash_bytes(config)


def test_custom_op_persistent_bytes_follow_the_spec():
    import re
    from pathlib import Path
    from memory_model.tflm_tail import CUSTOM_OPDATA_BYTES
    spec = (Path(__file__).resolve().parent.parent / "tflm_ops" / "SPEC.md").read_text()
    table = dict(re.findall(r"\| `(MCUF_[A-Z_]+)` \| (\d+) \| \d+ \|", spec))
    assert {k: int(v) for k, v in table.items()} == CUSTOM_OPDATA_BYTES


# ---- the convolutional tokenizer (SPEC 2.1, patch_kernel > patch_size) -----------------------

CONV_TOKENIZER = arch.ArchConfig(image_size=28, channels=1, patch_size=4, patch_kernel=7, embed_dim=32,
                                 num_classes=10, num_heads=[2, 2], qkv_dim=[32, 32], mlp_hidden=[64, 64])


def test_conv_tokenizer_is_a_7x7_window_in_scratch_flash_and_macs():
    conv, plain = CONV_TOKENIZER, CONV_TOKENIZER.replace(patch_kernel=0)
    # E 32 > P*P*C 16: strips go up, the halo is the K - P - pad = 2 rows below: 2 * 28 bytes;
    # then int32 accumulators of 4 patches, the 49-column window (one chunk, 52 aligned) and its packed copy
    assert scratch_bytes(conv)[0] == 7 * 32 + 2 * 28 + 4 * 4 * 32 + 52 + 2 * 4 * 52
    assert scratch_bytes(plain)[0] == 7 * 32 + 4 * 4 * 32 + 16 + 2 * 4 * 16
    assert constant_tensors(conv)[0] == (32 * 49, 32)
    assert model_flash_bytes(conv) - model_flash_bytes(plain) == 32 * 49 - 32 * 16      # both 16-aligned
    assert conv.layer_macs()["patch_embed"] == 49 * 49 * 32
    assert conv.layer_params()["patch_embed"] == 49 * 32 + 32 + 49 * 32
    assert scratch_bytes(conv)[1:] == scratch_bytes(plain)[1:]


def test_patch_kernel_equal_to_the_patch_is_the_plain_patch_split():
    same = CONV_TOKENIZER.replace(patch_kernel=4)
    assert same == CONV_TOKENIZER.replace(patch_kernel=0) and "patch_kernel" not in same.to_dict()
    assert arch.ArchConfig.from_dict(CONV_TOKENIZER.to_dict()) == CONV_TOKENIZER
    with pytest.raises(arch.UserError, match="patch_kernel"):
        CONV_TOKENIZER.replace(patch_kernel=3)
    with pytest.raises(arch.UserError, match="K\\*K\\*channels <= 65535"):
        CONV_TOKENIZER.replace(channels=3, patch_kernel=148)           # 148 * 148 * 3 = 65712


STEM = arch.ArchConfig(image_size=28, channels=1, stem=[[3, 1, 16], [3, 2, 32]], patch_size=2, patch_kernel=3,
                       embed_dim=32, num_classes=10, num_heads=[2], qkv_dim=[32], mlp_hidden=[64])


def test_stem_layers_counted_by_hand():
    """SPEC 3's stem: two MCUF_PATCH_EMBED layers (3x3 stride 1 to 16 channels, 3x3 stride 2 to 32) before a
    3x3 stride-2 tokenizer of the 14 x 14 x 32 map: 49 tokens."""
    assert STEM.grid == 7 and STEM.patch_dim == 3 * 3 * 32 and "/stem3s1c16/stem3s2c32/p2k3" in STEM.describe()
    assert arch.ArchConfig.from_dict(STEM.to_dict()) == STEM and STEM.to_dict()["stem"] == [[3, 1, 16], [3, 2, 32]]
    macs, params = STEM.layer_macs(), STEM.layer_params()
    assert (macs["stem0"], macs["stem1"], macs["patch_embed"]) == (28 * 28 * 9 * 16, 14 * 14 * 9 * 16 * 32,
                                                                   49 * 288 * 32)
    assert (params["stem0"], params["stem1"]) == (9 * 16 + 16, 9 * 16 * 32 + 32) and list(macs)[:3] == list(params)[:3]
    assert activation_bytes(STEM)[:4] == [784, 28 * 28 * 16, 14 * 14 * 32, 49 * 32]
    assert custom_graph_plan(STEM).tensor_names[:4] == ["image", "stem0", "stem1", "tokens_0"]
    # strip + halo + one window (1 patch a pass): the first layer's strips go up (16 > 1) with a 1-row halo below
    assert scratch_bytes(STEM, 1)[:3] == [28 * 16 + 28 + 9, 14 * 32 + 144, 7 * 32 + 288]
    assert constant_tensors(STEM)[:6] == [(16 * 9, 16), (64, 0), (128, 0), (32 * 144, 32), (128, 0), (256, 0)]
    # every feature map over the image: the largest, 12,544 B, is the shared buffer
    assert set(custom_graph_plan(STEM).tensor_offsets[:-1]) == {0} and head_bytes(STEM) > 28 * 28 * 16


@pytest.mark.parametrize("changes, fragment", [({"stem": [[3, 4, 8]]}, "stride <= kernel"),
                                                ({"stem": [[2, 2]]}, "kernel, stride, channels"),
                                                ({"stem": [[3, 3, 8]]}, "stride dividing its 28x28 input"),
                                                ({"stem": [[3, 2, 8]], "patch_size": 4}, "does not tile the 14x14 stem")])
def test_bad_stem_is_a_user_error(changes, fragment):
    with pytest.raises(arch.UserError, match=fragment):
        STEM.replace(**changes)
