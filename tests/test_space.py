"""SearchSpace: spaces as data, sampling/variation stays inside, bad input names the field."""
import numpy as np
import pytest

from keras_supernet.arch import ArchConfig
from keras_supernet.space import DIMENSIONS, FULL, SearchSpace, rank_for
from common.errors import UserError

FMNIST = "configs/spaces/fmnist.yaml"
IMAGENET = "configs/spaces/mcuformer_imagenet.yaml"


def tiny(**changes):
    data = {"name": "tiny", "channels": 1, "num_classes": 10, "head_dim": 8, "image_size": [16, 24],
            "patch_size": [4, 8], "embed_dim": [16, 24], "depth": [1, 2], "num_heads": [1, 2],
            "mlp_ratio": [1, 2], "rank_ratio": [0.5, "full"]}
    data.update(changes)
    return data


def test_both_project_spaces_load_with_their_choices():
    fm, im = SearchSpace.load(FMNIST), SearchSpace.load(IMAGENET)
    assert set(fm.dimensions) == set(DIMENSIONS)
    assert im.dimensions["embed_dim"] == [168, 192, 216]
    assert im.dimensions["depth"] == [12, 13, 14]
    assert im.dimensions["num_heads"] == [3, 4]
    assert im.dimensions["mlp_ratio"] == [3.5, 4.0]
    assert im.dimensions["patch_size"] == [16, 20, 24, 28, 32]
    assert im.dimensions["rank_ratio"][0] == 0.4 and im.dimensions["rank_ratio"][-2:] == [0.95, FULL]
    assert 240 in im.dimensions["image_size"] and im.patches_for(240) == [16, 20, 24]
    assert SearchSpace.from_dict(fm.to_dict()) == fm and fm.fingerprint() == SearchSpace.load(FMNIST).fingerprint()


@pytest.mark.parametrize("changes, fragment", [
    ({"embed_dim": []}, "embed_dim: needs at least one choice"),
    ({"rank_ratio": [0.5, 1.5]}, "rank_ratio: choice 1.5 is out of range"),
    ({"depth": [2.5]}, "depth: choice 2.5 must be an integer"),
    ({"num_heads": ["two"]}, "num_heads: choice 'two' is not a number"),
    ({"patch_size": [4, 5]}, "patch_size: 5 does not tile any image_size"),
    ({"image_size": [16, 30]}, "image_size: 30 is not tiled by any patch_size"),
    ({"channels": 2}, "channels: must be 1 or 3"),
    ({"pool": "max"}, "pool: must be one of"),
    ({"widths": [1]}, "unknown key 'widths'"),
])
def test_bad_space_is_a_user_error_naming_the_field(changes, fragment):
    with pytest.raises(UserError, match=fragment):
        SearchSpace.from_dict(tiny(**changes))


def test_missing_dimension_and_bad_file(tmp_path):
    data = tiny()
    del data["mlp_ratio"]
    with pytest.raises(UserError, match="missing required key 'mlp_ratio'"):
        SearchSpace.from_dict(data)
    bad = tmp_path / "s.yaml"
    bad.write_text("embed_dim: [16,\n")
    with pytest.raises(UserError, match="not valid yaml"):
        SearchSpace.load(bad)


def test_rank_ratio_maps_to_integer_ranks():
    assert rank_for(0.5, 64, 192) == 32
    assert rank_for(0.4, 216, 648) == 86           # round(86.4)
    assert rank_for(FULL, 64, 192) == 0
    assert rank_for(0.01, 8, 8) == 1                # never a rank-0 "low-rank" layer


@pytest.mark.parametrize("path", [FMNIST, IMAGENET])
def test_sample_mutate_crossover_stay_inside_and_are_seeded(path):
    space = SearchSpace.load(path)
    rng = np.random.default_rng(0)
    seen_patches, seen_low_rank, seen_depths = set(), False, set()
    for _ in range(150):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(space.crossover(a, b, rng), rng)
        for c in (a, b, child):
            space.check(c)                                  # raises if outside
            assert c.image_size % c.patch_size == 0
            assert space.decode(space.encode(c)) == c
        seen_patches.add(a.patch_size)
        seen_depths.add(a.depth)
        seen_low_rank |= any(r > 0 for r in a.qkv_rank + a.fc1_rank)
    assert seen_patches == set(space.dimensions["patch_size"])
    assert seen_depths == set(space.dimensions["depth"]) and seen_low_rank
    assert space.sample(7) == space.sample(7) and space.mutate(a, 3) == space.mutate(a, 3)


def test_smallest_and_largest_bound_every_sample():
    space = SearchSpace.load(FMNIST)
    small, large = space.smallest(), space.largest()
    params = [space.sample(s).params() for s in range(200)]
    macs = [space.sample(s).macs() for s in range(200)]
    assert small.params() <= min(params) and large.params() >= max(params)
    assert small.macs() <= min(macs) and large.macs() >= max(macs)
    assert large.qkv_rank == (0,) * large.depth and min(small.qkv_rank) > 0


def test_subnet_outside_the_space_names_the_field():
    space = SearchSpace.from_dict(tiny())
    good = space.largest()
    cases = [
        (good.replace(num_heads=[2, 4], qkv_dim=[16, 32]), "num_heads: block 1: 4 is not one of"),
        (good.replace(qkv_dim=[32, 16]), "qkv_dim: block 0: 32 != num_heads 2"),
        (good.replace(mlp_hidden=[24, 30]), "mlp_hidden: block 1: 30"),
        (good.replace(fc1_rank=[0, 5]), "fc1_rank: block 1: rank 5 matches no rank_ratio"),
        (good.replace(embed_dim=32, mlp_hidden=[32, 32]), "embed_dim: 32 is not one of"),
        (good.replace(image_size=32), "image_size: 32 is not one of"),
        (good.replace(num_classes=3), "num_classes: 3 but the space has 10"),
    ]
    for config, fragment in cases:
        assert not space.contains(config)
        with pytest.raises(UserError, match=fragment):
            space.check(config)
    # ArchConfig itself rejects what no space could hold
    with pytest.raises(UserError, match="patch_size: 5 does not tile"):
        good.replace(patch_size=5)
    with pytest.raises(UserError, match="qkv_rank: block 0: rank 99 is outside"):
        good.replace(qkv_rank=[99, 0])
    with pytest.raises(UserError, match="num_heads: block 0: 3 heads do not divide qkv_dim 16"):
        good.replace(num_heads=[3, 2])


def test_dimensions_are_data_and_can_be_replaced():
    space = SearchSpace.from_dict(tiny())
    wider = space.with_choices(embed_dim=[16, 24, 32], rank_ratio=[0.25, 0.5, FULL])
    assert wider.dimensions["embed_dim"] == [16, 24, 32] and space.dimensions["embed_dim"] == [16, 24]
    assert wider.fingerprint() != space.fingerprint()
    assert wider.max_dims()["embed_dim"] == 32 and wider.max_dims()["mlp_hidden"] == 64
    with pytest.raises(UserError, match="unknown dimension 'width'"):
        space.with_choices(width=[1])
    with pytest.raises(UserError, match="depth: needs at least one choice"):
        space.with_choices(depth=[])


def test_imagenet_space_pairs_patch_sizes_with_tiling_resolutions():
    space = SearchSpace.load(IMAGENET)
    pairs = {(c.image_size, c.patch_size) for c in (space.sample(s) for s in range(300))}
    assert pairs == {(224, 16), (224, 28), (224, 32), (240, 16), (240, 20), (240, 24)}
    assert isinstance(space.largest(), ArchConfig) and space.largest().num_patches == 225


def test_a_subnet_window_other_than_the_spaces_is_outside_it():
    space = SearchSpace.from_dict(tiny())
    config = space.sample(np.random.default_rng(0))
    space.check(config)
    with pytest.raises(UserError, match="patch_kernel"):
        space.check(config.replace(patch_kernel=config.patch_size + 2))


def test_patch_overlap_gives_every_subnet_a_wider_window_and_keeps_old_fingerprints():
    plain, conv = SearchSpace.from_dict(tiny()), SearchSpace.from_dict(tiny(patch_overlap=3))
    assert "patch_overlap" not in plain.to_dict() and SearchSpace.from_dict(tiny(patch_overlap=0)) == plain
    assert plain.fingerprint() != conv.fingerprint() and SearchSpace.from_dict(conv.to_dict()) == conv
    config = conv.sample(np.random.default_rng(1))
    assert config.kernel == config.patch_size + 3 and conv.contains(config) and not plain.contains(config)
    assert conv.decode(conv.encode(config)) == config
    for bad in (-1, 1.5, True, 300):                       # (8 + 300)^2 > 65535
        with pytest.raises(UserError, match="patch_overlap"):
            SearchSpace.from_dict(tiny(patch_overlap=bad))


def test_a_stem_is_shared_by_every_subnet_and_keeps_old_fingerprints():
    """A fixed stem: patch sizes tile its output (image / 2), every subnet carries it, and a subnet with
    another stem (or none) is outside the space; spaces without one are spelled, and fingerprinted, as before."""
    plain, stemmed = SearchSpace.from_dict(tiny()), SearchSpace.from_dict(tiny(stem=[[3, 2, 8]], image_size=[32, 48]))
    assert "stem" not in plain.to_dict() and SearchSpace.from_dict(tiny(stem=[])) == plain
    assert SearchSpace.from_dict(stemmed.to_dict()) == stemmed and plain.fingerprint() != stemmed.fingerprint()
    assert stemmed.stem_stride == 2 and stemmed.max_dims()["channels"] == 8 and stemmed.max_dims()["grid"] == 6
    assert stemmed.patches_for(48) == [4, 8] and stemmed.images_for(8) == [32, 48]
    config = stemmed.sample(np.random.default_rng(1))
    assert config.stem == ((3, 2, 8),) and config.grid == config.image_size // 2 // config.patch_size
    assert stemmed.decode(stemmed.encode(config)) == config and stemmed.contains(config)
    for other in ([], [[3, 2, 16]]):
        with pytest.raises(UserError, match="stem"):
            stemmed.check(config.replace(stem=other))


@pytest.mark.parametrize("stem, fragment", [([[3, 4, 8]], "stride <= kernel"), ([[3, 2]], "kernel, stride, channels"),
                                            ("3x3", "kernel, stride, channels"),
                                            ([[3, 3, 8]], "not a multiple of the stem's stride 3")])
def test_bad_stem_is_a_user_error(stem, fragment):
    with pytest.raises(UserError, match=fragment):
        SearchSpace.from_dict(tiny(stem=stem))
