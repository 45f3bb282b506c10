"""`mcuformer evolve-space` end to end: two rounds with brief retraining between them."""
import json

import numpy as np
import pytest

from conftest import run_cli
from keras_supernet.space import SearchSpace
from test_search_cli import TINY, supernet_dir  # noqa: F401  (the tiny trained supernet fixture)


@pytest.mark.slow
def test_evolve_space_cli_runs_rounds_and_retrains(supernet_dir, tmp_path):  # noqa: F811
    out = tmp_path / "evo"
    args = ["evolve-space", "--supernet", str(supernet_dir), "--sram", "256KB", "--flash", "1MB",
            "--out", str(out), "--rounds", "2", "--samples", "2", "--retrain-epochs", "1", "--val-limit", "60"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "evolve_space.json").read_text())
    assert [r["round"] for r in result["rounds"]] == [0, 1]
    first, second = result["rounds"]
    assert second["space"] == first["next_space"]
    for dim in first["dimensions"].values():
        for s in dim["scores"]:
            if s["ET"] is not None:   # 2 subnets, each scored on 60 images: a multiple of 1/120, top-50 = all
                assert s["T"] == pytest.approx(s["E"]) and s["ET"] * 120 == pytest.approx(round(s["ET"] * 120))
    # round 1 scored the evolved space with a briefly retrained supernet of that space
    run = json.loads((out / "supernet_round1" / "run.json").read_text())
    assert SearchSpace.from_dict(run["space"]) == SearchSpace.from_dict(first["next_space"])
    assert second["fitness"] != first["fitness"]
    assert "round 1:" in proc.stdout
    # a finished evolution re-run changes nothing
    again = run_cli(*args)
    assert again.returncode == 0 and json.loads((out / "evolve_space.json").read_text()) == result


def test_weight_inheritance_copies_the_overlap():
    from keras_supernet.supernet import Supernet
    from search.retrain import inherit_weights
    small = SearchSpace.from_dict(TINY)
    wide = small.with_choices(embed_dim=[16, 24, 32], depth=[1, 2, 3])
    src, dst = Supernet(small, seed=1), Supernet(wide, seed=2)
    assert inherit_weights(dst, src) > 0
    source = {v.name.split("/", 1)[-1]: v for v in src.weights}
    for var in dst.weights:
        other = source.get(var.name.split("/", 1)[-1])
        if other is not None:
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(var.shape, other.shape))
            assert np.array_equal(var.numpy()[overlap], other.numpy()[overlap]), var.name
