"""A subnet architecture as small data: `ArchConfig`, its checks and counters.

Pure Python (no TensorFlow): search evaluates thousands of these per second.
Layer naming and shapes here are the contract shared by the supernet, its
exported static model (`static_vit.py`), the converter and `tflm_ops/SPEC.md`.

Per block `i`: `num_heads[i]`, `qkv_dim[i]` (= heads * head size),
`mlp_hidden[i]`, and one rank per linear layer (`qkv_rank`, `proj_rank`,
`fc1_rank`, `fc2_rank`; 0 = full rank, r > 0 = W ~ U(out x r) . V(r x in)).
`patch_kernel` > `patch_size` makes the patch embedding an overlapping
convolutional tokenizer (a K x K convolution of stride P, zero padded, SPEC
2.1); 0 (or `patch_size`) is the plain patch split.
`stem`: convolution layers before the patch embedding, each (kernel, stride,
channels) with a ReLU (CCT's convolutional tokenizer, SPEC 3); the patch
embedding then tokenizes the last layer's feature map.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property

from common.errors import UserError
from tflm_ops import contract

LINEARS = ("qkv", "proj", "fc1", "fc2")
POOLS = ("mean", "cls", "seq")     # seq: CCT's sequence pooling (a softmax over tokens of a learned score)


@dataclass(frozen=True)
class ArchConfig:
    image_size: int                 # square input, H = W
    channels: int                   # 1 or 3
    patch_size: int
    embed_dim: int
    num_classes: int
    num_heads: tuple
    qkv_dim: tuple
    mlp_hidden: tuple
    qkv_rank: tuple = ()
    proj_rank: tuple = ()
    fc1_rank: tuple = ()
    fc2_rank: tuple = ()
    pool: str = "mean"
    patch_kernel: int = 0           # tokenizer window K (0: = patch_size, non-overlapping)
    stem: tuple = ()                # ((kernel, stride, channels), ...) convolutions + ReLU before the patch embedding
    extra: dict = field(default_factory=dict, compare=False, hash=False)   # free-form notes

    # ---- construction -------------------------------------------------------
    def __post_init__(self):
        depth = len(self.num_heads)
        for name in ("num_heads", "qkv_dim", "mlp_hidden") + tuple(f"{l}_rank" for l in LINEARS):
            value = getattr(self, name)
            if isinstance(value, int):
                value = (value,) * depth
            value = tuple(int(v) for v in value) if value else (0,) * depth
            object.__setattr__(self, name, value)
        try:
            stem = tuple(tuple(int(v) for v in layer) for layer in self.stem)
        except (TypeError, ValueError):
            raise UserError(f"architecture config: stem: must be a list of [kernel, stride, channels], "
                            f"got {self.stem!r}") from None
        object.__setattr__(self, "stem", stem)
        if self.patch_kernel == self.patch_size:
            object.__setattr__(self, "patch_kernel", 0)     # one spelling of the plain patch split
        self.validate()

    @classmethod
    def from_dict(cls, data: dict) -> "ArchConfig":
        if not isinstance(data, dict):
            raise UserError("architecture config must be a mapping")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"depth"})
        if unknown:
            raise UserError(f"architecture config: unknown field {unknown[0]!r}; valid fields are "
                            f"{', '.join(sorted(names))}")
        data = dict(data)
        depth = data.pop("depth", None)
        if depth is not None:
            for name in ("num_heads", "qkv_dim", "mlp_hidden"):
                if isinstance(data.get(name), int):
                    data[name] = [data[name]] * int(depth)
            if "num_heads" in data and len(data["num_heads"]) != int(depth):
                raise UserError(f"architecture config: depth {depth} but num_heads has "
                                f"{len(data['num_heads'])} entries")
        missing = [f.name for f in fields(cls) if f.name in
                   ("image_size", "channels", "patch_size", "embed_dim", "num_classes", "num_heads",
                    "qkv_dim", "mlp_hidden") and f.name not in data]
        if missing:
            raise UserError(f"architecture config: missing field {missing[0]!r}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise UserError(f"architecture config: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "ArchConfig":
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict:
        d = asdict(self)
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
        if not d["extra"]:
            del d["extra"]
        if not d["patch_kernel"]:
            del d["patch_kernel"]
        if d["stem"]:
            d["stem"] = [list(layer) for layer in self.stem]
        else:
            del d["stem"]
        return d

    def replace(self, **changes) -> "ArchConfig":
        d = self.to_dict()
        d.update(changes)
        return ArchConfig.from_dict(d)

    # ---- checks ---------------------------------------------------------------
    def validate(self) -> None:
        def bad(field_name, message):
            raise UserError(f"architecture config: {field_name}: {message}")

        for name in ("image_size", "channels", "patch_size", "embed_dim", "num_classes"):
            if getattr(self, name) <= 0:
                bad(name, f"must be positive, got {getattr(self, name)}")
        if self.channels not in (1, 3):
            bad("channels", f"must be 1 or 3, got {self.channels}")
        size, channels = self.image_size, self.channels
        for i, layer in enumerate(self.stem):
            if len(layer) != 3:
                bad("stem", f"layer {i}: must be [kernel, stride, channels], got {list(layer)}")
            k, s, c = layer
            if s < 1 or k < s or c < 1 or size % s or k * k * channels > contract.MAX_SIZE:
                bad("stem", f"layer {i}: [kernel {k}, stride {s}, channels {c}] needs channels >= 1 and "
                    f"1 <= stride <= kernel, the stride dividing its {size}x{size} input and "
                    f"K*K*C_in <= {contract.MAX_SIZE}")
            size, channels = size // s, c
        if size % self.patch_size:
            bad("patch_size", f"{self.patch_size} does not tile the {size}x{size} "
                f"{'stem output' if self.stem else 'input'}")
        if self.patch_kernel and (self.patch_kernel < self.patch_size
                                  or self.patch_kernel ** 2 * channels > contract.MAX_SIZE):
            bad("patch_kernel", f"must be 0 or at least patch_size {self.patch_size} with K*K*channels <= "
                f"{contract.MAX_SIZE}, got {self.patch_kernel}")
        if self.pool not in POOLS:
            bad("pool", f"must be one of {', '.join(POOLS)}, got {self.pool!r}")
        depth = self.depth
        if depth < 1:
            bad("num_heads", "needs at least one block")
        for name in ("qkv_dim", "mlp_hidden") + tuple(f"{l}_rank" for l in LINEARS):
            if len(getattr(self, name)) != depth:
                bad(name, f"has {len(getattr(self, name))} entries for {depth} blocks")
        for i in range(depth):
            h, q = self.num_heads[i], self.qkv_dim[i]
            if h <= 0 or q <= 0 or q % h:
                bad("num_heads", f"block {i}: {h} heads do not divide qkv_dim {q}")
            if self.mlp_hidden[i] <= 0:
                bad("mlp_hidden", f"block {i}: must be positive")
            for lin in LINEARS:
                r = getattr(self, f"{lin}_rank")[i]
                n_in, n_out = self.linear_shape(i, lin)
                if r < 0 or r > min(n_in, n_out):
                    bad(f"{lin}_rank", f"block {i}: rank {r} is outside 0..{min(n_in, n_out)} "
                        f"for a {n_in}->{n_out} layer (0 = full rank)")

    # ---- derived sizes ---------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.num_heads)

    @cached_property
    def stem_shapes(self) -> tuple:
        """(size, channels) of the image and of each stem layer's output, square feature maps."""
        shapes = [(self.image_size, self.channels)]
        for _, stride, channels in self.stem:
            shapes.append((shapes[-1][0] // stride, channels))
        return tuple(shapes)

    @property
    def grid(self) -> int:
        return self.stem_shapes[-1][0] // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def num_tokens(self) -> int:
        return self.num_patches + (1 if self.pool == "cls" else 0)

    @property
    def kernel(self) -> int:
        """The tokenizer's window K (= patch_size for the plain patch split)."""
        return self.patch_kernel or self.patch_size

    @property
    def patch_dim(self) -> int:
        """Inputs of one token's projection: the K x K x C window (C: the last stem layer's channels)."""
        return self.kernel * self.kernel * self.stem_shapes[-1][1]

    def linear_shape(self, block: int, linear: str) -> tuple:
        """(in_features, out_features) of one linear layer of a block."""
        e, q, m = self.embed_dim, self.qkv_dim[block], self.mlp_hidden[block]
        return {"qkv": (e, 3 * q), "proj": (q, e), "fc1": (e, m), "fc2": (m, e)}[linear]

    def rank(self, block: int, linear: str) -> int:
        return getattr(self, f"{linear}_rank")[block]

    # ---- counters (no model building) -----------------------------------------------
    def linear_params(self, block: int, linear: str) -> int:
        """Weights + bias of one linear layer (low-rank: V has no bias, U has)."""
        n_in, n_out = self.linear_shape(block, linear)
        r = self.rank(block, linear)
        return (n_in * n_out if r == 0 else r * (n_in + n_out)) + n_out

    def stem_layers(self) -> list:
        """(kernel, stride, in_channels, out_channels, out_size) of each stem layer."""
        shapes = self.stem_shapes
        return [(k, s, shapes[i][1], c, shapes[i + 1][0]) for i, (k, s, c) in enumerate(self.stem)]

    def layer_params(self) -> dict:
        e = self.embed_dim
        out = {f"stem{i}": k * k * c_in * c + c for i, (k, _, c_in, c, _) in enumerate(self.stem_layers())}
        out["patch_embed"] = self.patch_dim * e + e + self.num_tokens * e + (e if self.pool == "cls" else 0)
        for i in range(self.depth):
            out[f"block{i}.attn"] = 2 * e + self.linear_params(i, "qkv") + self.linear_params(i, "proj")
            out[f"block{i}.mlp"] = 2 * e + self.linear_params(i, "fc1") + self.linear_params(i, "fc2")
        out["head"] = 2 * e + e * self.num_classes + self.num_classes + (e + 1 if self.pool == "seq" else 0)
        return out

    def params(self) -> int:
        return sum(self.layer_params().values())

    def layer_macs(self) -> dict:
        t, e = self.num_tokens, self.embed_dim

        def lin(i, name):
            n_in, n_out = self.linear_shape(i, name)
            r = self.rank(i, name)
            return t * (n_in * n_out if r == 0 else r * (n_in + n_out))

        out = {f"stem{i}": size * size * k * k * c_in * c
               for i, (k, _, c_in, c, size) in enumerate(self.stem_layers())}
        out["patch_embed"] = self.num_patches * self.patch_dim * e
        for i in range(self.depth):
            attention = 2 * t * t * self.qkv_dim[i]          # q.k^T and p.v
            out[f"block{i}.attn"] = lin(i, "qkv") + attention + lin(i, "proj")
            out[f"block{i}.mlp"] = lin(i, "fc1") + lin(i, "fc2")
        out["head"] = e * self.num_classes
        return out

    def macs(self) -> int:
        return sum(self.layer_macs().values())

    @property
    def stem_label(self) -> str:
        """The stem as `describe` spells it ("/stem3s1c16/stem3s2c32"; empty without one)."""
        return "".join(f"/stem{k}s{s}c{c}" for k, s, c in self.stem)

    def describe(self) -> str:
        ranks = ",".join("/".join(str(self.rank(i, l)) for l in LINEARS) for i in range(self.depth))
        tokenizer = f"k{self.patch_kernel}" if self.patch_kernel else ""
        return (f"{self.image_size}px{self.stem_label}/p{self.patch_size}{tokenizer} E{self.embed_dim} depth{self.depth} "
                f"heads{list(self.num_heads)} qkv{list(self.qkv_dim)} mlp{list(self.mlp_hidden)} "
                f"ranks[{ranks}] pool={self.pool}")


def deit_tiny(num_classes: int = 1000) -> ArchConfig:
    """DeiT-Tiny shape (224/16, E192, 3 heads, depth 12, MLP 4x), mean-pool head."""
    return ArchConfig(image_size=224, channels=3, patch_size=16, embed_dim=192, num_classes=num_classes,
                      num_heads=(3,) * 12, qkv_dim=(192,) * 12, mlp_hidden=(768,) * 12)


def mcuformer_shape(num_classes: int = 1000) -> ArchConfig:
    """MCUFormer-shaped model (240/20, E192, 3 heads, 13 blocks, MLP 4x), full rank."""
    return ArchConfig(image_size=240, channels=3, patch_size=20, embed_dim=192, num_classes=num_classes,
                      num_heads=(3,) * 13, qkv_dim=(192,) * 13, mlp_hidden=(768,) * 13)


def fmnist_small(num_classes: int = 10) -> ArchConfig:
    """The fixed small ViT used to prove the int8-in-TFLM path (28/4, E64, 2 heads, 4 blocks, MLP 128)."""
    return ArchConfig(image_size=28, channels=1, patch_size=4, embed_dim=64, num_classes=num_classes,
                      num_heads=(2,) * 4, qkv_dim=(64,) * 4, mlp_hidden=(128,) * 4)
