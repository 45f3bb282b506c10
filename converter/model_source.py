"""What `mcuformer convert` converts: a saved static ViT, or a stock tf_keras ViT mapped
onto one (`keras_import`), optionally factorised (`low_rank`), and the report of both steps."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import keras_import, keras_load, low_rank


@dataclass
class ModelSource:
    imported: object = None          # keras_import.ImportedViT of a stock model, else None
    full_rank: object = None         # the static ViT before --rank / --rank-ratio, else None
    ranks: dict | None = None
    rank: int = 0
    rank_ratio: float = 0.0

    def report(self, x_eval, y_eval, calib, float_accuracy: float, flash_bytes: int) -> dict:
        """report.json entries: `import` (stock model) and `low_rank` (--rank / --rank-ratio).

        `x_eval`, `calib`: float pixels / 255; `float_accuracy`: the converted static model's.
        """
        from memory_model.memory import model_flash_bytes

        out = {}
        if self.imported is not None:
            source_acc = _accuracy(self.imported.source_logits(x_eval), y_eval)
            from .baseline import builtin_substitutes

            out["import"] = {**self.imported.notes, "source_float_accuracy": source_acc,
                             "baseline_activation_substitutes": builtin_substitutes(self.imported.model),
                             "max_abs_logit_difference": keras_import.weight_error(self.imported, calib),
                             "logit_difference_images": int(len(calib))}
        if self.full_rank is not None:
            from keras_supernet.static_vit import arch_from_model

            full_arch = arch_from_model(self.full_rank)
            full_acc = _accuracy(self.full_rank.predict(np.asarray(x_eval, np.float32), batch_size=256,
                                                        verbose=0), y_eval)
            factored = arch_from_model_ranks(full_arch, self.ranks)
            out["low_rank"] = {
                "rank": self.rank, "rank_ratio": self.rank_ratio, "ranks": self.ranks,
                "float_accuracy_full_rank": full_acc, "float_accuracy": float_accuracy,
                "float_accuracy_change": float_accuracy - full_acc,
                "flash_bytes": flash_bytes,
                "flash_bytes_full_rank_predicted": model_flash_bytes(full_arch),
                "flash_bytes_predicted": model_flash_bytes(factored),
                "params_full_rank": full_arch.params(), "params": factored.params(),
            }
        return out


def arch_from_model_ranks(arch, ranks: dict):
    fields = {}
    for lin in ("qkv", "proj", "fc1", "fc2"):
        fields[f"{lin}_rank"] = [ranks.get(f"block{i}.{lin}") or arch.rank(i, lin) for i in range(arch.depth)]
    return arch.replace(**fields)


def _accuracy(logits, labels) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def load_static(model_path, custom_objects=None, rank: int = 0, rank_ratio: float = 0.0) -> tuple:
    """(static ViT to convert, ModelSource) of the model saved at `model_path`."""
    model = keras_load.load_model(model_path, custom_objects)
    source = ModelSource(rank=rank, rank_ratio=rank_ratio)
    if not keras_load.is_static_vit(model):
        source.imported = keras_import.import_vit(model)
        model = source.imported.model
    if rank or rank_ratio:
        source.full_rank = model
        model, source.ranks = low_rank.factorise(model, rank=rank, ratio=rank_ratio)
    return model, source
