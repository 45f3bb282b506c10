"""The tokenizer window as a per-subnet search choice (`patch_overlap: [0, 1, 3]`): one
supernet kernel at the widest window, each subnet's narrower window masked in place, so the
exported static K x K convolution equals the supernet exactly and no window adds a graph."""
import numpy as np
import pytest
import tensorflow as tf

from common.errors import UserError
from keras_supernet.masked import window_offset
from keras_supernet.space import SearchSpace
from keras_supernet.supernet import Supernet, export_subnet
from test_space import tiny

OVERLAPS = [0, 1, 3]


@pytest.fixture(scope="module")
def space():
    return SearchSpace.from_dict(tiny(channels=3, num_classes=5, patch_overlap=OVERLAPS))


def test_the_window_is_a_gene_of_each_subnet(space):
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(60)]
    assert {c.kernel - c.patch_size for c in configs} == set(OVERLAPS)
    for c in configs:
        assert space.contains(c) and space.decode(space.encode(c)) == c
    assert space.smallest().kernel == space.smallest().patch_size
    assert space.largest().kernel == space.largest().patch_size + 3
    assert {space.mutate(configs[0], s, global_prob=1.0).kernel - 4 for s in range(40)
            if space.mutate(configs[0], s, global_prob=1.0).patch_size == 4} == set(OVERLAPS)
    with pytest.raises(UserError, match="patch_kernel"):
        space.check(configs[0].replace(patch_kernel=configs[0].patch_size + 2))
    again = SearchSpace.from_dict(space.to_dict())
    assert again == space and space.to_dict()["patch_overlap"] == OVERLAPS
    assert again.fingerprint() != SearchSpace.from_dict(tiny(channels=3, num_classes=5, patch_overlap=3)).fingerprint()


def test_window_offsets_align_a_narrow_same_convolution_inside_the_widest():
    """Hand count: stride 4, widest 7 (SAME: 1 zero before); 4 (0 before) starts at 1, 5 (0) at 1,
    6 (1) at 0. Checked against TensorFlow: the narrow kernel zero-embedded at that offset."""
    assert [window_offset(4, k, 3) for k in (4, 5, 6, 7)] == [1, 1, 0, 0]
    rng = np.random.default_rng(0)
    image = tf.constant(rng.random((1, 16, 16, 2)), tf.float32)
    for k in (4, 5, 6, 7):
        narrow = rng.normal(size=(k, k, 2, 3)).astype(np.float32)
        wide = np.zeros((7, 7, 2, 3), np.float32)
        start = window_offset(4, k, 3)
        wide[start:start + k, start:start + k] = narrow
        expected = tf.nn.conv2d(image, narrow, 4, "VALID" if k == 4 else "SAME")
        got = tf.nn.conv2d(image, wide, 4, "SAME")
        assert np.max(np.abs(expected.numpy() - got.numpy())) < 1e-5, k


def test_every_window_exports_exactly_and_shares_its_token_grids_graph(space):
    net = Supernet(space, seed=4)
    rng = np.random.default_rng(1)
    configs = [space.sample(rng) for _ in range(12)]
    for config in configs:
        x = np.random.default_rng(2).random((2, config.image_size, config.image_size, 3)).astype(np.float32)
        model = export_subnet(net, config)
        assert model.get_layer("patch_embed").kernel.shape[0] == config.kernel
        expected = model(x).numpy()
        masks = net.masks(config)
        compiled = net.compiled_forward(config)(x, masks).numpy()
        all_blocks = net.forward(tf.constant(x), masks, config.patch_size).numpy()
        assert np.max(np.abs(compiled - expected)) <= 1e-5, config.describe()
        assert np.max(np.abs(all_blocks - expected)) <= 1e-5, config.describe()
    grids = {(c.image_size, c.patch_size, c.depth) for c in configs}
    windows = {(c.image_size, c.patch_size, c.depth, c.kernel) for c in configs}
    assert len(net._graphs.by_grid) == len(grids) < len(windows)


def test_a_subnet_without_a_window_gene_gets_the_spaces_narrowest():
    from search.budget import uniform_subnets

    fixed = SearchSpace.from_dict(tiny(patch_overlap=3))
    assert all(fixed.contains(c) and c.kernel == c.patch_size + 3 for c in uniform_subnets(fixed))
    chosen = SearchSpace.from_dict(tiny(patch_overlap=[1, 3]))
    assert all(c.kernel == c.patch_size + 1 for c in uniform_subnets(chosen))
