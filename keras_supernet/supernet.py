"""The weight-entangled ViT supernet and `export_subnet`.

    supernet = Supernet(SearchSpace.load("configs/spaces/fmnist.yaml"))
    supernet.set_sample_config(config)          # an ArchConfig of the space
    logits = supernet(images)                   # images at config.image_size, pixels / 255
    model = export_subnet(supernet, config)     # static tf_keras ViT, inherited weights

The subnet runs as masks over the shared weights (`masked.py`); blocks beyond
its depth are not executed. `compiled_forward(config)` is one graph for every
subnet of that token grid and depth; training uses one graph per token grid. Images at another resolution than
the subnet's are an error (resize first: `resize_images`). A space with several tokenizers
(`tokenizer_space.py`) gets a stem and patch embedding per tokenizer (`tokenizer(t)`) before the
shared blocks.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from common.errors import UserError

from .arch import ArchConfig
from .masked import arch_masks
from .space import SearchSpace
from .static_vit import build_vit, stem_layer
from .super_layers import SuperAttention, SuperHead, SuperMlp, SuperPatchEmbed


class _GraphCache:
    """Compiled graphs kept out of Keras' attribute tracking (not checkpointed)."""

    def __init__(self):
        self.by_grid = {}


class Supernet(keras.Model):
    def __init__(self, space: SearchSpace, seed: int = 0, **kwargs):
        kwargs.setdefault("name", f"supernet_{space.name}")
        super().__init__(**kwargs)
        self.space, self.seed = space, int(seed)
        m = space.max_dims()
        parts = space.branches
        if len(parts) == 1:         # the names of a one-tokenizer space, so its checkpoints still load
            self.stem = [stem_layer(k, s, c, f"stem{j}", seed=seed + j) for j, (k, s, c) in enumerate(space.stem)]
            self.patch_embed = SuperPatchEmbed(m, seed, name="patch_embed")
        else:
            self.stems = [[stem_layer(k, s, c, f"tok{t}_stem{j}", seed=seed + 100 * t + j)
                           for j, (k, s, c) in enumerate(part.stem)] for t, part in enumerate(parts)]
            self.patch_embeds = [SuperPatchEmbed(part.max_dims(), seed, name=f"tok{t}_patch_embed")
                                 for t, part in enumerate(parts)]
        self.attn_blocks = [SuperAttention(m, i, seed, name=f"block{i}_attn") for i in range(m["depth"])]
        self.mlp_blocks = [SuperMlp(m, i, seed, name=f"block{i}_mlp") for i in range(m["depth"])]
        self.head = SuperHead(m, seed, name="head")
        self.config: ArchConfig | None = None
        self._graphs = _GraphCache()
        for part in parts:                                            # creates every weight
            largest = part.largest()
            self.set_sample_config(largest)
            self(tf.zeros((1, largest.image_size, largest.image_size, space.channels)))
        self.set_sample_config(space.largest())

    def tokenizer(self, t: int = 0) -> tuple:
        """(stem layers, patch embedding) of the space's tokenizer `t`."""
        if len(self.space.branches) == 1:
            return self.stem, self.patch_embed
        return self.stems[t], self.patch_embeds[t]

    def super_layers(self, config: ArchConfig | None = None) -> list:
        """The super-layers `config` runs (default: the sampled subnet's)."""
        config = config or self.config
        embed = self.tokenizer(self.space.tokenizer_index(config) if config else 0)[1]
        return [embed, *self.attn_blocks, *self.mlp_blocks, self.head]

    def set_sample_config(self, config: ArchConfig) -> None:
        self.space.check(config)
        self.config = config
        for layer in self.super_layers(config):
            layer.set_sample_config(config)

    def masks(self, config: ArchConfig) -> dict:
        """`config` as tensors of the same shapes for every subnet of its tokenizer (`masked.arch_masks`)."""
        return {k: tf.constant(v) for k, v in arch_masks(config, self.space.branch_of(config).max_dims()).items()}

    def forward(self, images, masks: dict, patch_size: int, depth: int | None = None, tokenizer: int = 0):
        """Logits of the subnet `masks` on images at its resolution. With `depth` the blocks past
        it are not run; without (the training graph, one for all depths) they run and are discarded
        by `masks["blocks"]` (a select, not a `tf.cond`: TF's cond gradients race when several
        subnets share one graph). `tokenizer` picks the stem and patch embedding (`tokenizer(t)`)."""
        stem, patch_embed = self.tokenizer(tokenizer)
        for layer in stem:
            images = layer(images)
        x = patch_embed(images, masks["embed"], patch_size, masks["window"])
        blocks = list(zip(self.attn_blocks, self.mlp_blocks))
        for i, (attn, mlp) in enumerate(blocks[:depth]):
            y = mlp(attn(x, masks), masks)
            x = y if depth is not None else tf.where(masks["blocks"][i] > 0, y, x)
        return self.head(x, masks)

    def compiled_forward(self, config: ArchConfig):
        """`forward` as one graph per (tokenizer, resolution, patch size, depth), shared by every subnet of it."""
        key = (self.space.tokenizer_index(config), config.image_size, config.patch_size, config.depth)
        cache = self._graphs.by_grid
        if key not in cache:
            specs = {k: tf.TensorSpec(v.shape, tf.float32) for k, v in self.masks(config).items()}
            image = tf.TensorSpec((None, config.image_size, config.image_size, self.space.channels), tf.float32)
            cache[key] = tf.function(lambda images, masks: self.forward(images, masks, key[2], key[3], key[0]),
                                     input_signature=(image, specs))
        return cache[key]

    def call(self, images, training=None):
        size = self.config.image_size
        if images.shape[1] != size or images.shape[2] != size:
            raise UserError(f"supernet: images are {images.shape[1]}x{images.shape[2]} but the sampled "
                            f"subnet takes {size}x{size}; resize them first")
        config = self.config
        return self.forward(images, self.masks(config), config.patch_size, config.depth,
                            self.space.tokenizer_index(config))

    def get_config(self):
        return {"space": self.space.to_dict(), "seed": self.seed, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(SearchSpace.from_dict(config["space"]), config["seed"], name=config["name"])


def resize_images(images, size: int):
    """Batch resize (bilinear, half-pixel centres) inside the graph, to a subnet's resolution."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return tf.image.resize(images, (size, size), method="bilinear")


def export_subnet(supernet: Supernet, config: ArchConfig, name: str = "subnet") -> keras.Model:
    """A static tf_keras ViT (`static_vit.build_vit`) holding `config`'s inherited weights."""
    supernet.set_sample_config(config)
    model = build_vit(config, name=name)
    stem, patch_embed = supernet.tokenizer(supernet.space.tokenizer_index(config))
    for j, layer in enumerate(stem):
        model.get_layer(f"stem{j}").set_weights(layer.get_weights())
    for layer in supernet.super_layers(config):
        if layer.name.startswith("block") and int(layer.name[5:].split("_")[0]) >= config.depth:
            continue
        weights = {k: np.asarray(v) for k, v in layer.active_weights().items()}
        target = model.get_layer("patch_embed" if layer is patch_embed else layer.name)
        target.set_weights([weights[w.name.split("/")[-1].split(":")[0]] for w in target.weights])
    return model
