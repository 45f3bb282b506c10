"""Short fine-tune proxy for the search's finalists.

Inherited accuracy from a briefly trained supernet ranks subnets poorly once each is
given the final training (benchmarks/results/accuracy_fmnist.json: Kendall tau -0.33 at
64 KiB). The proxy trains each finalist from its inherited weights for a few hundred
steps with the final training's recipe (warmup, cosine decay, label smoothing) and scores
it on the validation split, never the test set. Same interface as `fitness.SupernetFitness`
(`identity`, `__call__`), so scores are cached and resumed the same way.
"""
from __future__ import annotations

from .fitness import supernet_fitness_identity


class FinetuneProxy:
    """Validation top-1 of each subnet after `steps` fine-tuning steps from inherited weights."""

    def __init__(self, supernet_dir, data, steps: int, val_limit: int = 0, batch_size: int = 128, seed: int = 0,
                 progress: bool = False, supernet=None):
        """`supernet`: the already loaded supernet of `supernet_dir` (the search's), else it is loaded."""
        from keras_supernet.train import load_supernet, quiet_tensorflow

        self.identity = (f"{supernet_fitness_identity(supernet_dir, data, val_limit)}-finetune{steps}x{batch_size}"
                         f"-seed{seed}")
        quiet_tensorflow()
        self.supernet = supernet if supernet is not None else load_supernet(supernet_dir)
        self.data, self.steps, self.val_limit = data, steps, val_limit
        self.batch_size, self.seed, self.progress = batch_size, seed, progress

    def __call__(self, configs) -> list:
        return [self.score(config) for config in configs]

    def score(self, config) -> float:
        from keras_supernet.batches import split_data
        from keras_supernet.finetune import finetune_subnet
        from keras_supernet.run_folder import finetune_settings
        from keras_supernet.supernet import export_subnet

        x_tr, y_tr, x_val, y_val = split_data(self.data, config.image_size, config.channels,
                                              train_limit=self.steps * self.batch_size, val_limit=self.val_limit)
        # one epoch over steps x batch images: `steps` updates (the floor repeats a smaller set), one whole
        # warmup + cosine schedule
        settings = finetune_settings(epochs=1, batch_size=self.batch_size, seed=self.seed, min_steps=self.steps)
        model = export_subnet(self.supernet, config)
        history = finetune_subnet(model, x_tr, y_tr, x_val, y_val, settings, progress=self.progress)
        return history[-1]["val_acc"]
