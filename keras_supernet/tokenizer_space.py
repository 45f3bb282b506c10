"""A search space whose tokenizer is a choice too.

    tokenizers:
      - {stem: [[3, 1, 16], [3, 2, 32]], patch_size: 2, patch_overlap: 1}   # CCT's conv stem, 7x7 tokens
      - {patch_size: 4, patch_overlap: 3}                                   # one 7x7 window, stride 4
      - {patch_size: 7}                                                     # plain patches, 4x4 tokens

Each tokenizer is a branch: an ordinary `SearchSpace` with that stem, patch sizes and windows,
and the space's other dimensions. Every branch shares the transformer (embedding width,
depth, heads, MLP, ranks), so a subnet keeps its blocks when a mutation moves it to another
tokenizer. The supernet holds one stem and patch embedding per branch (`Supernet.tokenizer`)
and one set of blocks. The first tokenizer's largest subnet is the space's largest, the last
one's smallest its smallest (sandwich rule): list the tokenizers from the richest.
"""
from __future__ import annotations

import numpy as np

from common.configfile import check_keys
from common.errors import UserError

from .arch import ArchConfig
from .space import DIMENSIONS, FIXED, OPTIONAL_DIMS, SearchSpace

TOKENIZER_KEYS = ("stem", "patch_size", "patch_overlap")
SHARED_DIMS = tuple(d for d in DIMENSIONS if d not in TOKENIZER_KEYS)


class TokenizerSpace(SearchSpace):
    PER_TOKENIZER = ("patch_size", "patch_overlap")

    def __init__(self, name: str, dimensions: dict, channels: int, num_classes: int, head_dim: int,
                 pool: str = "mean", tokenizers=()):
        self.name = str(name)
        self.channels, self.num_classes, self.head_dim, self.pool = channels, num_classes, head_dim, pool
        if not isinstance(tokenizers, (list, tuple)) or not tokenizers:
            raise UserError(f"search space {self.name!r}: tokenizers: needs at least one "
                            f"{{stem, patch_size, patch_overlap}} entry")
        shared = {d: dimensions[d] for d in SHARED_DIMS if d in dimensions}
        self._parts = []
        for t, tok in enumerate(tokenizers):
            where = f"search space {self.name!r} tokenizer {t}"
            if not isinstance(tok, dict):
                raise UserError(f"{where}: must be a mapping of {', '.join(TOKENIZER_KEYS)}, got {tok!r}")
            check_keys(tok, TOKENIZER_KEYS, where, required=("patch_size",))
            dims = {**shared, "patch_size": tok["patch_size"], "patch_overlap": tok.get("patch_overlap", 0)}
            self._parts.append(SearchSpace(f"{self.name}/tokenizer{t}", dims, channels, num_classes, head_dim,
                                           pool, tok.get("stem") or ()))
        self.stem = None                                    # per tokenizer: see branches
        first = self._parts[0].dimensions
        self.dimensions = {d: first[d] for d in SHARED_DIMS}
        for d in self.PER_TOKENIZER:
            self.dimensions[d] = sorted({c for p in self._parts for c in p.dimensions[d]})
        self.dimensions = {d: self.dimensions[d] for d in DIMENSIONS}
        self._check_distinct()

    def _check_distinct(self) -> None:
        seen = {}
        for t, part in enumerate(self._parts):
            for p in part.dimensions["patch_size"]:
                for o in part.dimensions["patch_overlap"]:
                    key = (part.stem, p, p + o)
                    if key in seen:
                        raise UserError(f"search space {self.name!r}: tokenizers {seen[key]} and {t} both hold "
                                        f"patch_size {p} with a {p + o}-pixel window behind the same stem")
                    seen[key] = t

    # ---- loading / saving ------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, where: str = "search space") -> "TokenizerSpace":
        required = tuple(d for d in SHARED_DIMS if d not in OPTIONAL_DIMS) + FIXED[:3] + ("tokenizers",)
        allowed = ("name", "tokenizers") + SHARED_DIMS + tuple(f for f in FIXED if f != "stem")
        check_keys(data, allowed, where, required=required)
        return cls(data.get("name", "space"), {d: data[d] for d in SHARED_DIMS if d in data}, data["channels"],
                   data["num_classes"], data["head_dim"], data.get("pool", "mean"), data["tokenizers"])

    def to_dict(self) -> dict:
        tokenizers = []
        for part in self._parts:
            tok = {"patch_size": list(part.dimensions["patch_size"]),
                   "patch_overlap": list(part.dimensions["patch_overlap"])}
            if part.stem:
                tok["stem"] = [list(layer) for layer in part.stem]
            tokenizers.append(tok)
        return {"name": self.name, **{d: list(self.dimensions[d]) for d in SHARED_DIMS},
                "tokenizers": tokenizers, "channels": self.channels, "num_classes": self.num_classes,
                "head_dim": self.head_dim, "pool": self.pool}

    def with_choices(self, **changes) -> "TokenizerSpace":
        tied = sorted(set(changes) & set(self.PER_TOKENIZER))
        if tied:
            raise UserError(f"search space {self.name!r}: {tied[0]} belongs to each tokenizer; "
                            f"change it in the space's tokenizers list")
        return super().with_choices(**changes)

    # ---- branches ------------------------------------------------------------------------
    @property
    def branches(self) -> list:
        return list(self._parts)

    def tokenizer_index(self, config: ArchConfig) -> int:
        for t, part in enumerate(self._parts):
            d = part.dimensions
            if (config.stem == part.stem and config.patch_size in d["patch_size"]
                    and config.kernel - config.patch_size in d["patch_overlap"]):
                return t
        stem = config.stem_label or "no stem"
        raise UserError(f"subnet outside search space {self.name!r}: tokenizer: {stem} with patch_size "
                        f"{config.patch_size} and a {config.kernel}-pixel window is none of its tokenizers")

    def check(self, config: ArchConfig) -> None:
        self.branch_of(config).check(config)

    @property
    def window_searched(self) -> bool:
        return any(part.window_searched for part in self._parts)

    # ---- genes <-> ArchConfig: the tokenizer index is one more gene ------------------------------
    def decode(self, genes: dict) -> ArchConfig:
        genes = dict(genes)
        return self._parts[genes.pop("tokenizer", 0)].decode(genes)

    def encode(self, config: ArchConfig) -> dict:
        t = self.tokenizer_index(config)
        return {**self._parts[t].encode(config), "tokenizer": t}

    # ---- sampling and variation ---------------------------------------------------------
    def sample(self, rng=None, mode: str = "uniform") -> ArchConfig:
        rng = np.random.default_rng(rng)
        if mode == "largest":
            return self._parts[0].largest()
        if mode == "smallest":
            return self._parts[-1].smallest()
        if mode != "uniform":
            raise UserError(f"sampling mode must be uniform, smallest or largest, got {mode!r}")
        return self._parts[int(rng.integers(len(self._parts)))].sample(rng)

    def move(self, config: ArchConfig, t: int, rng) -> ArchConfig:
        """`config`'s transformer behind tokenizer `t` (its resolution kept where `t` tiles it)."""
        if self.tokenizer_index(config) == t:
            return config
        genes = self.encode(config)
        target = self._parts[t]

        def choice(options):
            return options[int(rng.integers(len(options)))]

        if genes["image_size"] not in target.dimensions["image_size"]:
            genes["image_size"] = choice(target.dimensions["image_size"])
        genes["patch_size"] = choice(target.patches_for(genes["image_size"]))
        genes["patch_overlap"] = choice(target.dimensions["patch_overlap"])
        genes["tokenizer"] = t
        return self.decode(genes)

    def mutate(self, config: ArchConfig, rng=None, prob: float = 0.2, global_prob: float = 0.4) -> ArchConfig:
        """Another tokenizer with `global_prob`, then the branch's own mutation."""
        rng = np.random.default_rng(rng)
        t = self.tokenizer_index(config)
        if rng.random() < global_prob:
            t = int(rng.integers(len(self._parts)))
        return self._parts[t].mutate(self.move(config, t, rng), rng, prob, global_prob)

    def crossover(self, a: ArchConfig, b: ArchConfig, rng=None) -> ArchConfig:
        """The tokenizer of either parent; the other parent's transformer is moved behind it."""
        rng = np.random.default_rng(rng)
        t = self.tokenizer_index(a if rng.random() < 0.5 else b)
        return self._parts[t].crossover(self.move(a, t, rng), self.move(b, t, rng), rng)

    # ---- sizes of the supernet that holds every subnet ------------------------------------
    def max_dims(self) -> dict:
        dims = [part.max_dims() for part in self._parts]
        out = dict(dims[0])
        for key in ("patch_size", "image_size", "grid", "channels", "patch_overlap"):
            out[key] = max(d[key] for d in dims)
        return out

    @property
    def stem_stride(self) -> int:
        raise UserError(f"search space {self.name!r}: the stem is per tokenizer (use branch_of(config))")

    @property
    def tokenizer_channels(self) -> int:
        raise UserError(f"search space {self.name!r}: the stem is per tokenizer (use branch_of(config))")
