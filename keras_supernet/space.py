"""A search space as data (`configs/spaces/*.yaml`) and its subnets as `ArchConfig`.

Pure Python (no TensorFlow), so search and space evolution can sample,
mutate and check thousands of subnets per second.

Searchable dimensions (`SearchSpace.dimensions`, name -> list of choices):
`image_size`, `patch_size`, `patch_overlap`, `embed_dim`, `depth` (one per
subnet) and `num_heads`, `mlp_ratio`, `rank_ratio` (one per block; the rank
ratio once per linear layer qkv/proj/fc1/fc2). A subnet's tokenizer window is
`patch_size + patch_overlap` (the convolutional tokenizer of SPEC 2.1 when the
overlap is positive; `patch_overlap` defaults to [0] and may be one integer).
Fixed: `channels`, `num_classes`, `head_dim` (qkv_dim = heads * head_dim),
`pool` and `stem` (convolution layers [kernel, stride, channels] + ReLU before the
patch embedding, shared by every subnet; default none: patch sizes then tile the
stem's output, `image_size / stride`). A space may instead list `tokenizers`, each
its own stem, patch sizes and windows: the tokenizer is then a choice too
(`tokenizer_space.TokenizerSpace`). A rank ratio maps to an integer rank `round(ratio * min(in, out))` (at
least 1); `full` is rank 0.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from common.configfile import check_keys, load_mapping
from common.errors import UserError

from tflm_ops import contract

from .arch import LINEARS, POOLS, ArchConfig

FULL = "full"
GLOBAL_DIMS = ("image_size", "patch_size", "patch_overlap", "embed_dim", "depth")
BLOCK_DIMS = ("num_heads", "mlp_ratio", "rank_ratio")
DIMENSIONS = GLOBAL_DIMS + BLOCK_DIMS
FIXED = ("channels", "num_classes", "head_dim", "pool", "stem")
INT_DIMS = ("image_size", "patch_size", "patch_overlap", "embed_dim", "depth", "num_heads")
OPTIONAL_DIMS = {"patch_overlap": [0]}      # dimensions a space file may leave out


def _rank_key(choice):
    return float("inf") if choice == FULL else float(choice)


def rank_for(ratio, n_in: int, n_out: int) -> int:
    """The integer rank of a `n_in -> n_out` linear layer at `ratio` (0 = full rank)."""
    if ratio == FULL:
        return 0
    return max(1, int(round(float(ratio) * min(n_in, n_out))))


def hidden_for(ratio, embed_dim: int) -> int:
    return int(round(float(ratio) * embed_dim))


class SearchSpace:
    """Choices per dimension plus the fixed settings; every subnet is an `ArchConfig`."""

    def __init__(self, name: str, dimensions: dict, channels: int, num_classes: int, head_dim: int,
                 pool: str = "mean", stem=()):
        self.name = str(name)
        self.channels, self.num_classes, self.head_dim, self.pool = channels, num_classes, head_dim, pool
        self.stem = self._clean_stem(stem)
        self.dimensions = {d: self._clean(d, dimensions.get(d, OPTIONAL_DIMS.get(d))) for d in DIMENSIONS}
        self._validate()

    # ---- loading / saving ------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, where: str = "search space") -> "SearchSpace":
        if isinstance(data, dict) and "tokenizers" in data:
            from .tokenizer_space import TokenizerSpace      # a subclass: imported when a space asks for it
            return TokenizerSpace.from_dict(data, where)
        required = tuple(d for d in DIMENSIONS if d not in OPTIONAL_DIMS) + FIXED[:3]
        check_keys(data, ("name",) + DIMENSIONS + FIXED, where, required=required)
        return cls(data.get("name", "space"), {d: data[d] for d in DIMENSIONS if d in data}, data["channels"],
                   data["num_classes"], data["head_dim"], data.get("pool", "mean"), data.get("stem") or ())

    @classmethod
    def load(cls, path) -> "SearchSpace":
        return cls.from_dict(load_mapping(path, "search space"), where=f"search space {Path(path).name}")

    def to_dict(self) -> dict:
        dims = {d: list(c) for d, c in self.dimensions.items()}
        overlap = dims.pop("patch_overlap")       # spelled as before when fixed, so old fingerprints hold
        if overlap != [0]:
            dims["patch_overlap"] = overlap[0] if len(overlap) == 1 else overlap
        stem = {"stem": [list(layer) for layer in self.stem]} if self.stem else {}     # old fingerprints hold
        return {"name": self.name, **dims, "channels": self.channels, "num_classes": self.num_classes,
                "head_dim": self.head_dim, "pool": self.pool, **stem}

    def fingerprint(self) -> str:
        """Identifies the space's shape (not its name): checkpoints are bound to it."""
        data = self.to_dict()
        del data["name"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def with_choices(self, **changes) -> "SearchSpace":
        """A new space with some dimensions' choice lists replaced (space evolution)."""
        data = self.to_dict()
        unknown = sorted(set(changes) - set(DIMENSIONS))
        if unknown:
            raise UserError(f"search space: unknown dimension {unknown[0]!r}; dimensions are {', '.join(DIMENSIONS)}")
        data.update({k: list(v) for k, v in changes.items()})
        return SearchSpace.from_dict(data)

    # ---- checks ----------------------------------------------------------------------
    def _clean(self, dim: str, choices) -> list:
        def bad(message):
            raise UserError(f"search space {self.name!r}: {dim}: {message}")

        if choices is None or (isinstance(choices, (list, tuple)) and not choices):
            bad("needs at least one choice (the dimension is empty)")
        if not isinstance(choices, (list, tuple)):
            choices = [choices]
        out = []
        for c in choices:
            if dim == "rank_ratio" and c == FULL:
                out.append(FULL)
                continue
            if isinstance(c, bool) or not isinstance(c, (int, float)):
                bad(f"choice {c!r} is not a number" + (" or 'full'" if dim == "rank_ratio" else ""))
            if dim in INT_DIMS and c != int(c):
                bad(f"choice {c!r} must be an integer")
            if dim == "patch_overlap" and c < 0:
                bad(f"choice {c!r} is out of range (must be 0 or more)")
            if (c <= 0 and dim != "patch_overlap") or (dim == "rank_ratio" and c > 1):
                bad(f"choice {c!r} is out of range ({'0 < ratio <= 1' if dim == 'rank_ratio' else 'must be positive'})")
            out.append(int(c) if dim in INT_DIMS else float(c))
        return sorted(set(out), key=_rank_key)

    def _clean_stem(self, stem) -> tuple:
        try:
            layers = tuple(tuple(int(v) for v in layer) for layer in stem)
        except (TypeError, ValueError):
            layers = ((),)
        for layer in layers:
            if len(layer) != 3 or not 1 <= layer[1] <= layer[0] or layer[2] < 1:
                raise UserError(f"search space {self.name!r}: stem: must be a list of [kernel, stride, channels] "
                                f"with 1 <= stride <= kernel, got {stem!r}")
        return layers

    @property
    def stem_stride(self) -> int:
        return int(np.prod([stride for _, stride, _ in self.stem]))

    @property
    def tokenizer_channels(self) -> int:
        """Channels of the map the patch embedding reads: the last stem layer's, else the image's."""
        return self.stem[-1][2] if self.stem else self.channels

    def _validate(self) -> None:
        def bad(field, message):
            raise UserError(f"search space {self.name!r}: {field}: {message}")

        if self.channels not in (1, 3):
            bad("channels", f"must be 1 or 3, got {self.channels!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            bad("num_classes", f"must be an integer >= 2, got {self.num_classes!r}")
        window = max(self.dimensions["patch_size"]) + max(self.dimensions["patch_overlap"])
        if window ** 2 * self.tokenizer_channels > contract.MAX_SIZE:
            bad("patch_overlap", f"the largest window (patch_size + patch_overlap)^2 x channels must be <= "
                f"{contract.MAX_SIZE}, got {window}^2 x {self.tokenizer_channels}")
        for s in self.dimensions["image_size"]:
            if s % self.stem_stride:
                bad("image_size", f"{s} is not a multiple of the stem's stride {self.stem_stride}")
        if not isinstance(self.head_dim, int) or self.head_dim <= 0:
            bad("head_dim", f"must be a positive integer, got {self.head_dim!r}")
        if self.pool not in POOLS:
            bad("pool", f"must be one of {', '.join(POOLS)}, got {self.pool!r}")
        for p in self.dimensions["patch_size"]:
            if not self.images_for(p):
                bad("patch_size", f"{p} does not tile any image_size choice {self.dimensions['image_size']}")
        for s in self.dimensions["image_size"]:
            if not self.patches_for(s):
                bad("image_size", f"{s} is not tiled by any patch_size choice {self.dimensions['patch_size']}")

    # ---- the tokenizer branches (one here; several in a TokenizerSpace) -------------------------
    PER_TOKENIZER: tuple = ()       # dimensions that belong to a tokenizer, not to the whole space

    @property
    def branches(self) -> list:
        """One space per tokenizer choice, each with a fixed stem; the supernet holds a tokenizer per branch."""
        return [self]

    def tokenizer_index(self, config: ArchConfig) -> int:
        return 0

    def branch_of(self, config: ArchConfig) -> "SearchSpace":
        return self.branches[self.tokenizer_index(config)]

    @property
    def window_searched(self) -> bool:
        """Whether the tokenizer window is a per-subnet choice. A fixed one draws no random
        numbers, so spaces without the choice sample, mutate and cross over as they always did."""
        return len(self.dimensions["patch_overlap"]) > 1

    def patches_for(self, image_size: int) -> list:
        return [p for p in self.dimensions["patch_size"] if (image_size // self.stem_stride) % p == 0]

    def images_for(self, patch_size: int) -> list:
        return [s for s in self.dimensions["image_size"] if (s // self.stem_stride) % patch_size == 0]

    def check(self, config: ArchConfig) -> None:
        """Raise UserError naming the first field of `config` outside this space."""
        def bad(field, message):
            raise UserError(f"subnet outside search space {self.name!r}: {field}: {message}")

        for field in ("channels", "num_classes", "pool", "stem"):
            if getattr(config, field) != getattr(self, field):
                bad(field, f"{getattr(config, field)!r} but the space has {getattr(self, field)!r}")
        if config.kernel - config.patch_size not in self.dimensions["patch_overlap"]:
            bad("patch_kernel", f"{config.kernel} but the space's windows are patch_size {config.patch_size} "
                f"+ patch_overlap {self.dimensions['patch_overlap']}")
        for field, value in (("image_size", config.image_size), ("patch_size", config.patch_size),
                             ("embed_dim", config.embed_dim), ("depth", config.depth)):
            if value not in self.dimensions[field]:
                bad(field, f"{value} is not one of {self.dimensions[field]}")
        self.encode(config)

    def contains(self, config: ArchConfig) -> bool:
        try:
            self.check(config)
        except UserError:
            return False
        return True

    # ---- genes <-> ArchConfig ----------------------------------------------------------------
    def decode(self, genes: dict) -> ArchConfig:
        """genes: image_size, patch_size, embed_dim (ints) and per-block lists num_heads,
        mlp_ratio, {qkv,proj,fc1,fc2}_rank_ratio (their length is the depth)."""
        e = genes["embed_dim"]
        heads = list(genes["num_heads"])
        qkv = [h * self.head_dim for h in heads]
        hidden = [hidden_for(r, e) for r in genes["mlp_ratio"]]
        ranks = {}
        for lin in LINEARS:
            shapes = {"qkv": lambda i: (e, 3 * qkv[i]), "proj": lambda i: (qkv[i], e),
                      "fc1": lambda i: (e, hidden[i]), "fc2": lambda i: (hidden[i], e)}[lin]
            ranks[f"{lin}_rank"] = [rank_for(r, *shapes(i)) for i, r in enumerate(genes[f"{lin}_rank_ratio"])]
        # without a window gene (e.g. search.budget.uniform_subnets): the narrowest, the cheapest
        overlap = genes.get("patch_overlap", self.dimensions["patch_overlap"][0])
        return ArchConfig(image_size=genes["image_size"], channels=self.channels, patch_size=genes["patch_size"],
                          patch_kernel=genes["patch_size"] + overlap, embed_dim=e, num_classes=self.num_classes,
                          num_heads=heads, qkv_dim=qkv, mlp_hidden=hidden, pool=self.pool, stem=self.stem, **ranks)

    def encode(self, config: ArchConfig) -> dict:
        """The genes of a subnet of this space (inverse of `decode`)."""
        def bad(field, message):
            raise UserError(f"subnet outside search space {self.name!r}: {field}: {message}")

        e = config.embed_dim
        genes = {"image_size": config.image_size, "patch_size": config.patch_size,
                 "patch_overlap": config.kernel - config.patch_size, "embed_dim": e,
                 "num_heads": list(config.num_heads), "mlp_ratio": []}
        genes.update({f"{lin}_rank_ratio": [] for lin in LINEARS})
        for i in range(config.depth):
            h = config.num_heads[i]
            if h not in self.dimensions["num_heads"]:
                bad("num_heads", f"block {i}: {h} is not one of {self.dimensions['num_heads']}")
            if config.qkv_dim[i] != h * self.head_dim:
                bad("qkv_dim", f"block {i}: {config.qkv_dim[i]} != num_heads {h} x head_dim {self.head_dim}")
            ratio = [r for r in self.dimensions["mlp_ratio"] if hidden_for(r, e) == config.mlp_hidden[i]]
            if not ratio:
                bad("mlp_hidden", f"block {i}: {config.mlp_hidden[i]} is not mlp_ratio x {e} for any "
                                  f"mlp_ratio in {self.dimensions['mlp_ratio']}")
            genes["mlp_ratio"].append(ratio[0])
            for lin in LINEARS:
                r = config.rank(i, lin)
                shape = config.linear_shape(i, lin)
                ratio = [c for c in self.dimensions["rank_ratio"] if rank_for(c, *shape) == r]
                if not ratio:
                    bad(f"{lin}_rank", f"block {i}: rank {r} matches no rank_ratio in "
                                       f"{self.dimensions['rank_ratio']} for a {shape[0]}->{shape[1]} layer")
                genes[f"{lin}_rank_ratio"].append(ratio[0])
        return genes

    # ---- sampling and variation ---------------------------------------------------------
    def _block_genes(self, pick) -> dict:
        g = {"num_heads": pick("num_heads"), "mlp_ratio": pick("mlp_ratio")}
        g.update({f"{lin}_rank_ratio": pick("rank_ratio") for lin in LINEARS})
        return g

    def sample(self, rng=None, mode: str = "uniform") -> ArchConfig:
        """A random subnet (`uniform`), or the `smallest` / `largest` one (sandwich rule)."""
        rng = np.random.default_rng(rng)
        dims = self.dimensions
        if mode == "uniform":
            def pick(dim, options=None):
                options = options or dims[dim]
                return options[int(rng.integers(len(options)))]
            image = pick("image_size")
            patch = pick("patch_size", self.patches_for(image))
        elif mode in ("smallest", "largest"):
            end = 0 if mode == "smallest" else -1

            def pick(dim, options=None):
                return (options or dims[dim])[end]
            image = pick("image_size")
            patch = self.patches_for(image)[-1 - end]      # fewest tokens for the smallest
        else:
            raise UserError(f"sampling mode must be uniform, smallest or largest, got {mode!r}")
        depth = pick("depth")
        genes = {"image_size": image, "patch_size": patch, "embed_dim": pick("embed_dim"),
                 "patch_overlap": pick("patch_overlap") if self.window_searched else dims["patch_overlap"][0]}
        blocks = [self._block_genes(pick) for _ in range(depth)]
        genes.update({k: [b[k] for b in blocks] for k in blocks[0]})
        return self.decode(genes)

    def smallest(self) -> ArchConfig:
        return self.sample(mode="smallest")

    def largest(self) -> ArchConfig:
        return self.sample(mode="largest")

    def mutate(self, config: ArchConfig, rng=None, prob: float = 0.2, global_prob: float = 0.4) -> ArchConfig:
        """Resample each per-block gene with `prob`, and E / depth / resolution / patch with `global_prob`."""
        rng = np.random.default_rng(rng)
        genes = self.encode(config)
        dims = self.dimensions

        def choice(options):
            return options[int(rng.integers(len(options)))]

        for dim in ("embed_dim", "image_size", *(["patch_overlap"] if self.window_searched else [])):
            if rng.random() < global_prob:
                genes[dim] = choice(dims[dim])
        if rng.random() < global_prob or genes["patch_size"] not in self.patches_for(genes["image_size"]):
            genes["patch_size"] = choice(self.patches_for(genes["image_size"]))
        depth = choice(dims["depth"]) if rng.random() < global_prob else config.depth
        block_keys = ["num_heads", "mlp_ratio"] + [f"{lin}_rank_ratio" for lin in LINEARS]
        for key in block_keys:
            dim = "rank_ratio" if key.endswith("rank_ratio") else key
            values = genes[key][:depth]
            values += [choice(dims[dim]) for _ in range(depth - len(values))]
            genes[key] = [choice(dims[dim]) if rng.random() < prob else v for v in values]
        return self.decode(genes)

    def crossover(self, a: ArchConfig, b: ArchConfig, rng=None) -> ArchConfig:
        """Each gene from either parent (per block where both have the block; depth from one)."""
        rng = np.random.default_rng(rng)
        ga, gb = self.encode(a), self.encode(b)
        keys = ("image_size", "embed_dim", *(["patch_overlap"] if self.window_searched else []))
        child = {k: (ga if rng.random() < 0.5 else gb)[k] for k in keys}
        child.setdefault("patch_overlap", ga["patch_overlap"])
        patches = self.patches_for(child["image_size"])
        options = [g["patch_size"] for g in (ga, gb) if g["patch_size"] in patches] or patches
        child["patch_size"] = options[int(rng.integers(len(options)))]
        depth_parent, other = (ga, gb) if rng.random() < 0.5 else (gb, ga)
        for key in ga:
            if isinstance(ga[key], list):
                mine, theirs = depth_parent[key], other[key]
                child[key] = [theirs[i] if i < len(theirs) and rng.random() < 0.5 else v for i, v in enumerate(mine)]
        return self.decode(child)

    # ---- sizes of the supernet that holds every subnet ------------------------------------
    def max_dims(self) -> dict:
        d = self.dimensions
        e, q = max(d["embed_dim"]), max(d["num_heads"]) * self.head_dim
        hidden = max(hidden_for(r, x) for r in d["mlp_ratio"] for x in d["embed_dim"])
        grid = max(s // self.stem_stride // p for s in d["image_size"] for p in self.patches_for(s))
        return {"embed_dim": e, "qkv_dim": q, "mlp_hidden": hidden, "depth": max(d["depth"]),
                "patch_size": max(d["patch_size"]), "image_size": max(d["image_size"]), "grid": grid,
                "channels": self.tokenizer_channels,      # the patch embedding's input
                "num_classes": self.num_classes, "pool": self.pool,
                "head_dim": self.head_dim, "patch_overlap": max(d["patch_overlap"])}

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {self.dimensions})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()
