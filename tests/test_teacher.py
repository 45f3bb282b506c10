"""Distillation in the final training: the CNN teacher command, and `finetune_subnet(teacher=)`."""
import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from common.errors import UserError
from keras_supernet.run_folder import TrainSettings
from keras_supernet.space import SearchSpace
from keras_supernet.teacher import build_cnn_teacher, build_teacher, model_macs

TINY = {"name": "tiny", "channels": 1, "num_classes": 10, "head_dim": 8, "pool": "mean", "image_size": [28],
        "patch_size": [7], "embed_dim": [16], "depth": [1], "num_heads": [1], "mlp_ratio": [1],
        "rank_ratio": ["full"]}


def test_teacher_is_the_published_two_conv_cnn():
    model = build_cnn_teacher(28, 1, 10)
    # conv 3x3x1x32 + b, conv 3x3x32x64 + b, dense 7*7*64 x 10 + b
    assert model.count_params() == (9 * 32 + 32) + (9 * 32 * 64 + 64) + (7 * 7 * 64 * 10 + 10) == 50186
    assert model_macs(model) == 28 * 28 * 32 * 9 + 14 * 14 * 64 * 288 + 7 * 7 * 64 * 10


def test_cnn4_teacher_shape_and_macs():
    model = build_teacher("cnn4", 28, 1, 10)
    # convs without bias, each followed by batch norm (4 parameters per channel); dense 3*3*128 x 10 + b
    convs = 9 * 1 * 32 + 9 * 32 * 64 + 9 * 64 * 64 + 9 * 64 * 128
    assert model.count_params() == convs + 4 * (32 + 64 + 64 + 128) + 3 * 3 * 128 * 10 + 10 == 141994
    assert model_macs(model) == (28 * 28 * 9 * 32 + 14 * 14 * 9 * (32 * 64 + 64 * 64) + 7 * 7 * 9 * 64 * 128
                                 + 3 * 3 * 128 * 10)
    assert model(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)


def _student_agreement(teacher_weight, teacher, x, y_noise, x_val):
    from keras_supernet.finetune import finetune_subnet
    from keras_supernet.supernet import Supernet, export_subnet

    space = SearchSpace.from_dict(TINY)
    student = export_subnet(Supernet(space, seed=0), space.smallest())
    settings = TrainSettings(epochs=6, batch_size=64, lr=3e-3, sampling="uniform", distill=False, augment=False,
                             label_smoothing=0.0, teacher_weight=teacher_weight, seed=0)
    # validate on the teacher's labels, so the kept epoch is the one that agrees most
    t_val = np.argmax(teacher(x_val.astype(np.float32) / 255, training=False), -1)
    finetune_subnet(student, x, y_noise, x_val, t_val, settings, progress=False, teacher=teacher)
    t = np.argmax(teacher(x.astype(np.float32) / 255, training=False), -1)
    s = np.argmax(student(x.astype(np.float32) / 255, training=False), -1)
    return float(np.mean(t == s))


def test_a_teacher_is_learned_even_from_noise_labels(fashion_mnist):
    """Labels drawn at random carry no signal: only the teacher's term can teach the student."""
    from keras_supernet.batches import split_data
    from keras_supernet.finetune import finetune_subnet

    x, y, x_val, y_val = split_data(fashion_mnist, 28, 1, train_limit=1024, val_limit=256)
    teacher = build_cnn_teacher(28, 1, 10)
    finetune_subnet(teacher, x, y, x_val, y_val, TrainSettings(epochs=2, batch_size=64, lr=3e-3, sampling="uniform",
                                                              distill=False, augment=False), progress=False)
    noise = np.random.default_rng(0).integers(0, 10, len(y))
    taught = _student_agreement(1.0, teacher, x, noise, x_val)
    untaught = _student_agreement(0.0, teacher, x, noise, x_val)
    assert taught > untaught + 0.25, (taught, untaught)


def test_teacher_of_another_shape_is_one_line(fashion_mnist):
    from keras_supernet.finetune import finetune_subnet
    from keras_supernet.supernet import Supernet, export_subnet

    space = SearchSpace.from_dict(TINY)
    student = export_subnet(Supernet(space, seed=0), space.smallest())
    x = fashion_mnist.x_train[:64]
    with pytest.raises(UserError, match="train a teacher for this subnet"):
        finetune_subnet(student, x, fashion_mnist.y_train[:64], x, fashion_mnist.y_train[:64],
                        TrainSettings(epochs=1, batch_size=64, sampling="uniform"), progress=False,
                        teacher=build_cnn_teacher(32, 1, 10))


def test_train_teacher_cli(tmp_path):
    out = tmp_path / "teacher.keras"
    args = ["train-teacher", "--out", str(out), "--epochs", "1", "--train-limit", "512", "--val-limit", "128",
            "--min-steps", "0"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "cnn4 teacher, 141,994 parameters" in proc.stdout and out.exists()
    from mcuformer.commands.finetune import load_teacher

    assert load_teacher(str(out)).count_params() == 141994      # batch norm loads back for distillation
    assert_one_line_error(run_cli(*args), "already exists")
    reference = run_cli(*args, "--force", "--arch", "cnn2")
    assert reference.returncode == 0 and "cnn2 teacher, 50,186 parameters" in reference.stdout, reference.stderr
    assert_one_line_error(run_cli(*args, "--force", "--arch", "resnet"), "choose cnn4 or cnn2")
    assert_one_line_error(run_cli("train-teacher", "--out", str(tmp_path / "t.h5")), "must end in .keras")
