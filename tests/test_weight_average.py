"""The fine-tuning EMA (keras_supernet/weight_average.py): its arithmetic by hand, the swap
in and out of a model, and an EMA fine-tune that resumes exactly from its backup."""
import numpy as np
import pytest
import tf_keras as keras

from keras_supernet.run_folder import TrainSettings
from keras_supernet.space import SearchSpace
from keras_supernet.supernet import Supernet, export_subnet
from keras_supernet.weight_average import WeightAverage
from common.errors import UserError
from test_train import TINY


def one_weight_model(value: float) -> keras.Model:
    model = keras.Sequential([keras.layers.Dense(1, use_bias=False, input_shape=(1,))])
    model.set_weights([np.array([[value]], np.float32)])
    return model


def test_average_ramps_its_decay_then_swaps_in_and_out():
    model = one_weight_model(1.0)
    ema = WeightAverage(model, decay=0.9)
    model.set_weights([np.array([[12.0]], np.float32)])
    ema.update(model, 1)                 # decay min(0.9, 2/11): 2/11 * 1 + 9/11 * 12 = 10
    assert ema.averages[0].numpy()[0, 0] == pytest.approx(10.0, rel=1e-6)
    ema.update(model, 10 ** 6)           # decay 0.9 by now: 0.9 * 10 + 0.1 * 12 = 10.2
    assert ema.averages[0].numpy()[0, 0] == pytest.approx(10.2, rel=1e-6)
    with ema.applied(model):
        assert model.get_weights()[0][0, 0] == pytest.approx(10.2, rel=1e-6)
    assert model.get_weights()[0][0, 0] == 12.0


def test_decay_outside_its_range_is_one_clear_error():
    with pytest.raises(UserError, match="ema_decay"):
        TrainSettings(ema_decay=1.0)


def test_ema_finetune_resumes_exactly(fashion_mnist, tmp_path):
    """The average is part of the backup: an interrupted EMA fine-tune ends where a straight one does."""
    from keras_supernet.batches import split_data
    from keras_supernet.finetune import finetune_subnet

    space = SearchSpace.from_dict(TINY)
    supernet, config = Supernet(space, seed=2), space.sample(5)
    x_tr, y_tr, x_val, y_val = split_data(fashion_mnist, 28, 1, train_limit=256, val_limit=100)
    settings = TrainSettings(epochs=2, batch_size=64, sampling="uniform", seed=1, ema_decay=0.95)
    straight = export_subnet(supernet, config)
    history = finetune_subnet(straight, x_tr, y_tr, x_val, y_val, settings, progress=False)
    assert history[-1]["best_epoch"] > 0          # an averaged epoch was kept, so the average decides the result
    interrupted = export_subnet(supernet, config)
    finetune_subnet(interrupted, x_tr, y_tr, x_val, y_val, settings, backup_dir=tmp_path / "b", progress=False,
                    stop_after=1)
    resumed = export_subnet(supernet, config)
    finetune_subnet(resumed, x_tr, y_tr, x_val, y_val, settings, backup_dir=tmp_path / "b", progress=False)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        assert np.array_equal(a, b)
