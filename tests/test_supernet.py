"""The supernet: exported subnets equal it exactly, weights are shared leading slices,
LayerNorm sees only active channels, skipped blocks do not run."""
import numpy as np
import pytest
import tensorflow as tf

from keras_supernet import static_vit
from keras_supernet.space import SearchSpace
from keras_supernet.super_layers import svd_factors
from keras_supernet.supernet import Supernet, export_subnet
from common.errors import UserError
from test_space import IMAGENET, tiny


TOKENIZERS = {"pool": "mean", "image_size": [32, 48], "patch_size": None,
              "tokenizers": [{"stem": [[3, 2, 6]], "patch_size": [4, 8]}, {"patch_size": 8, "patch_overlap": 3}]}


@pytest.fixture(scope="module", params=["mean", "cls", "seq", "conv_tokenizer", "stem", "tokenizers"])
def net(request):
    """Supernets of plain patch embeddings (mean, cls and sequence pooling), of convolutional tokenizers
    (every window 3 pixels wider than its patch: 7x7 and 11x11, SPEC 2.1), behind a shared stem
    (a 3x3 stride-2 convolution to 6 channels; the images twice as large, the token grids the same)
    and with the tokenizer a choice (that stem, or an 11x11 window of stride 8 on the image)."""
    settings = {"conv_tokenizer": {"pool": "mean", "patch_overlap": 3},
                "stem": {"pool": "mean", "stem": [[3, 2, 6]], "image_size": [32, 48]},
                "tokenizers": TOKENIZERS}.get(request.param, {"pool": request.param})
    data = {k: v for k, v in tiny(channels=3, num_classes=5, **settings).items() if v is not None}
    space = SearchSpace.from_dict(data)
    net = Supernet(space, seed=1)
    if request.param == "seq":     # scores far from uniform, so pooling weights differ per token and channel slice
        net.head.score_kernel.assign(np.random.default_rng(3).normal(0, 3, net.head.score_kernel.shape))
    return net


def images(size, n=3, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


def test_exported_subnets_equal_the_supernet(net):
    space = net.space
    configs = [space.largest(), space.smallest()] + [space.sample(s) for s in range(8 * len(space.branches))]
    assert {c.patch_size for c in configs} == {4, 8}
    assert {c.image_size // space.branch_of(c).stem_stride for c in configs} >= {16, 24}
    assert {space.tokenizer_index(c) for c in configs} == set(range(len(space.branches)))
    assert any(r > 0 for c in configs for r in c.qkv_rank + c.proj_rank + c.fc1_rank + c.fc2_rank)
    for config in configs:
        x = images(config.image_size)
        net.set_sample_config(config)
        expected = net(x).numpy()
        model = export_subnet(net, config)
        assert np.max(np.abs(model(x).numpy() - expected)) <= 1e-5, config.describe()
        assert model.count_params() == config.params()
        assert static_vit.arch_from_model(model) == config


def test_one_graph_serves_every_subnet_of_a_token_grid(net):
    """Subnets are masks: the compiled forward (one graph per resolution, patch size and depth)
    and the training forward (every block run, the skipped ones discarded) both equal the
    exported static model, and no subnet retraces a graph."""
    space = net.space
    configs = [space.sample(s) for s in range(100, 112)]
    for config in configs:
        x = images(config.image_size)
        expected = export_subnet(net, config)(x).numpy()
        masks = net.masks(config)
        compiled = net.compiled_forward(config)(x, masks).numpy()
        all_blocks = net.forward(tf.constant(x), masks, config.patch_size,
                                 tokenizer=space.tokenizer_index(config)).numpy()
        assert np.max(np.abs(compiled - expected)) <= 1e-5, config.describe()
        assert np.max(np.abs(all_blocks - expected)) <= 1e-5, config.describe()
    graphs = net._graphs.by_grid
    assert len(graphs) == len({(space.tokenizer_index(c), c.image_size, c.patch_size, c.depth)
                               for c in configs}) < len(configs)
    assert all(f.experimental_get_tracing_count() == 1 for f in graphs.values())


def test_exported_model_saves_reloads_and_reports_without_running(net, tmp_path):
    genes = net.space.encode(net.space.largest())
    genes.update(patch_size=8, fc1_rank_ratio=[0.5, "full"], qkv_rank_ratio=["full", 0.5])
    config = net.space.decode(genes)
    assert config.fc1_rank[0] > 0 and config.qkv_rank[1] > 0
    model = export_subnet(net, config)
    x = images(config.image_size)
    path = tmp_path / "subnet.keras"
    model.save(path)
    loaded = static_vit.load_vit(path)
    assert np.array_equal(loaded(x).numpy(), model(x).numpy())
    arch = static_vit.arch_from_model(loaded)
    assert arch == config and arch.params() == loaded.count_params()
    assert arch.macs() > 0 and set(arch.layer_macs()) == set(arch.layer_params())
    assert loaded.get_layer("block0_mlp").get_config()["fc1_rank"] == config.fc1_rank[0]


def test_subnets_use_leading_slices_only(net):
    """Perturbing weights outside a small subnet's slices (wider channels, later blocks,
    trailing rank components) leaves its output unchanged; LayerNorm statistics come
    from the active channels only."""
    space = net.space
    config = space.smallest()                       # E16, depth 1, rank 0.5, 1 head
    x = images(config.image_size)
    net.set_sample_config(config)
    before = net(x).numpy()
    block = net.attn_blocks[0]
    saved = {v.name: v.numpy() for v in net.weights}
    try:
        block.norm_gamma[config.embed_dim:].assign(np.full(8, 50.0, np.float32))
        block.norm_beta[config.embed_dim:].assign(np.full(8, 7.0, np.float32))
        block.qkv_v[:, config.qkv_rank[0]:].assign(np.ones_like(block.qkv_v.numpy()[:, config.qkv_rank[0]:]))
        for var in net.attn_blocks[1].weights + net.mlp_blocks[1].weights:
            var.assign(np.full(var.shape, 3.0, np.float32))
        net.set_sample_config(config)
        assert np.array_equal(net(x).numpy(), before)
        # ...while a perturbation inside the slices does change it
        block.qkv_v[0, 0].assign(block.qkv_v[0, 0] + 1.0)
        assert not np.array_equal(net(x).numpy(), before)
    finally:
        for v in net.weights:
            v.assign(saved[v.name])


def test_low_rank_factors_are_svd_ordered_and_full_rank_is_their_product(net):
    dense = np.random.default_rng(0).normal(size=(12, 20)).astype(np.float32)
    v, u = svd_factors(dense)
    assert v.shape == (12, 12) and u.shape == (12, 20)
    np.testing.assert_allclose(v @ u, dense, atol=1e-5)
    strength = np.linalg.norm(v, axis=0) * np.linalg.norm(u, axis=1)      # = singular values
    assert np.all(np.diff(strength) <= 1e-6)
    s = np.linalg.svd(dense, compute_uv=False)
    r = 4                                   # leading r components = the best rank-r approximation
    assert np.isclose(np.linalg.norm(dense - v[:, :r] @ u[:r]), np.sqrt(np.sum(s[r:] ** 2)), rtol=1e-4)

    config = net.space.largest()
    w = net.mlp_blocks[0]
    kernel = export_subnet(net, config).get_layer("block0_mlp").fc1_kernel.numpy()
    np.testing.assert_allclose(kernel, w.fc1_v.numpy() @ w.fc1_u.numpy()[:, :config.mlp_hidden[0]], atol=1e-6)


def test_bad_input_is_refused(net):
    config, small = net.space.largest(), net.space.smallest().image_size
    net.set_sample_config(config)
    large = config.image_size
    with pytest.raises(UserError, match=f"images are {small}x{small} but the sampled subnet takes {large}x{large}"):
        net(images(small))
    with pytest.raises(UserError, match="embed_dim: 32 is not one of"):
        net.set_sample_config(config.replace(embed_dim=32, mlp_hidden=[64, 64]))


def test_imagenet_scale_space_builds_and_exports():
    space = SearchSpace.load(IMAGENET)
    net = Supernet(space)
    config = space.sample(5).replace(image_size=224, patch_size=32)
    space.check(config)
    x = np.random.default_rng(0).random((1, 224, 224, 3)).astype(np.float32)
    net.set_sample_config(config)
    model = export_subnet(net, config)
    assert np.max(np.abs(model(x).numpy() - net(x).numpy())) <= 1e-5
    assert model.count_params() == config.params()


def test_a_fresh_static_model_draws_each_weight_separately():
    """fc1 with hidden = rank = embed_dim: its two factors share a shape, and must not share values."""
    config = SearchSpace.from_dict(tiny(channels=3, num_classes=5, pool="mean")).sample(0)
    e = config.embed_dim
    config = config.replace(mlp_hidden=[e] * config.depth, fc1_rank=[e] * config.depth)
    model = static_vit.build_vit(config)
    factors = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in model.weights if "fc1_" in w.name}
    assert factors["fc1_v"].shape == factors["fc1_u"].shape
    assert not np.array_equal(factors["fc1_v"], factors["fc1_u"])
