"""Supernet training: exact kill-and-resume, refusing another space's run, TensorBoard
logs, and the train-supernet / finetune commands end to end (tiny settings)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_one_line_error, run_cli
from keras_supernet import static_vit
from keras_supernet.space import SearchSpace
from keras_supernet.supernet import export_subnet
from keras_supernet.train import SupernetTrainer, TrainSettings, evaluate_subnet, load_supernet
from common.errors import UserError

TINY = {"name": "tiny_fmnist", "channels": 1, "num_classes": 10, "head_dim": 8, "image_size": [28],
        "patch_size": [7, 14], "embed_dim": [16, 24], "depth": [1, 2], "num_heads": [1, 2],
        "mlp_ratio": [1, 2], "rank_ratio": [0.5, "full"]}
SETTINGS = dict(epochs=2, batch_size=64, train_limit=256, val_limit=200, num_random=1, seed=3, distill=True,
                augment=True, clipnorm=1.0)     # every option on, so resume and replicas cover them


def make(out, data, space=None, resume=False, force=False, **changes):
    return SupernetTrainer(space or SearchSpace.from_dict(TINY), TrainSettings(**{**SETTINGS, **changes}), out,
                           data, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"), progress=False,
                           resume=resume, force=force)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fashion_mnist):
    out = tmp_path_factory.mktemp("run") / "uninterrupted"
    run = make(out, fashion_mnist)
    run.fit()
    return run


def test_kill_and_resume_gives_the_same_weights(uninterrupted, fashion_mnist, tmp_path):
    first = make(tmp_path / "run", fashion_mnist)
    first.fit(stop_after=1)                                # "killed" after epoch 1's checkpoint
    assert int(first.optimizer.iterations) == first.steps_per_epoch
    resumed = make(tmp_path / "run", fashion_mnist, resume=True)
    assert int(resumed.epoch.numpy()) == 1 and len(resumed.history) == 1
    resumed.fit()
    assert int(resumed.optimizer.iterations) == int(uninterrupted.optimizer.iterations)
    for a, b in zip(uninterrupted.supernet.weights, resumed.supernet.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    for a, b in zip(uninterrupted.optimizer.variables(), resumed.optimizer.variables()):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in h]   # noqa: E731
    assert strip(resumed.history) == strip(uninterrupted.history)
    assert strip(json.loads((tmp_path / "run" / "history.json").read_text())) == strip(uninterrupted.history)


def test_mid_epoch_checkpoint_resumes_exactly_without_redoing_steps(fashion_mnist, tmp_path):
    """12 steps, a checkpoint every 4: stopped after 6 steps (steps 5-6 lost, as a kill would),
    the resume starts at step 5 and trains 8 steps, ending on the uninterrupted run's weights."""
    one_epoch = dict(epochs=1, batch_size=32, train_limit=384, checkpoint_steps=4)     # 384 / 32 = 12 steps
    reference = make(tmp_path / "reference", fashion_mnist, **one_epoch)
    reference.fit()
    assert int(reference.optimizer.iterations) == 12
    make(tmp_path / "run", fashion_mnist, **one_epoch).fit(stop_after_steps=6)
    assert not (tmp_path / "run" / "history.json").exists()
    resumed = make(tmp_path / "run", fashion_mnist, resume=True, **one_epoch)
    assert int(resumed.optimizer.iterations) == 4 and int(resumed.position.numpy()) == 4
    calls = []
    compiled = resumed._step
    resumed._step = lambda grids: (lambda *a: (calls.append(1), compiled(grids)(*a))[1])
    resumed.fit()
    assert len(calls) == 8 and int(resumed.optimizer.iterations) == 12
    for a, b in zip(reference.supernet.weights, resumed.supernet.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    for a, b in zip(reference.optimizer.variables(), resumed.optimizer.variables()):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in h]   # noqa: E731
    assert strip(resumed.history) == strip(reference.history) and len(resumed.history) == 1


def test_training_learns_and_logs(uninterrupted):
    history = uninterrupted.history
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert history[1]["lr"] < history[0]["lr"]                      # cosine decay after warmup
    steps = uninterrupted._steps                  # one graph per tuple of token grids, never retraced
    assert 1 <= len(steps) <= 4 and all(f.experimental_get_tracing_count() == 1 for f in steps.values())
    events = list((uninterrupted.out / "logs").glob("events.out.tfevents.*"))
    assert events
    tags = {v.tag for e in events for ev in tf.compat.v1.train.summary_iterator(str(e)) for v in ev.summary.value}
    assert {"train_loss", "val_acc_largest", "val_acc_smallest", "lr"} <= tags


def test_load_supernet_restores_the_trained_weights(uninterrupted, fashion_mnist):
    loaded = load_supernet(uninterrupted.out)
    config = loaded.space.sample(1)
    x, y = uninterrupted.x_val, uninterrupted.y_val
    assert evaluate_subnet(loaded, config, x, y) == evaluate_subnet(uninterrupted.supernet, config, x, y)
    a = export_subnet(loaded, config).get_weights()
    b = export_subnet(uninterrupted.supernet, config).get_weights()
    assert all(np.array_equal(p, q) for p, q in zip(a, b))


def test_another_space_or_setting_is_refused(uninterrupted, fashion_mnist):
    other = SearchSpace.from_dict({**TINY, "embed_dim": [16, 32]})
    with pytest.raises(UserError, match="holds a supernet of space 'tiny_fmnist'.*use the same --space"):
        make(uninterrupted.out, fashion_mnist, space=other, resume=True)
    with pytest.raises(UserError, match="holds a supernet of space"):
        load_supernet(uninterrupted.out, space=other)
    with pytest.raises(UserError, match="pass --resume to continue it or --force"):
        make(uninterrupted.out, fashion_mnist)
    with pytest.raises(UserError, match="setting 'lr' was 0.008, now 0.01"):
        make(uninterrupted.out, fashion_mnist, resume=True, lr=0.01)
    with pytest.raises(UserError, match="distill: in-place distillation needs sandwich"):
        TrainSettings(sampling="uniform", distill=True)


def test_checkpoint_of_another_shape_is_not_half_loaded(uninterrupted, tmp_path):
    """Even with a doctored run.json, weights of another shape are refused, not partly restored."""
    import shutil

    folder = tmp_path / "doctored"
    shutil.copytree(uninterrupted.out / "ckpt", folder / "ckpt")
    run = json.loads((uninterrupted.out / "run.json").read_text())
    other = SearchSpace.from_dict({**TINY, "embed_dim": [16, 32]})
    run.update(space=other.to_dict(), fingerprint=other.fingerprint())
    (folder / "run.json").write_text(json.dumps(run))
    with pytest.raises(UserError, match="does not match this supernet"):
        load_supernet(folder)


def test_cli_train_then_finetune(tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(json.dumps(TINY))
    out = tmp_path / "sn"
    args = ["--space", str(space), "--out", str(out), "--epochs", "1", "--batch-size", "64",
            "--train-limit", "256", "--val-limit", "200", "--sampling", "uniform", "--min-steps", "0"]
    proc = run_cli("train-supernet", *args)
    assert proc.returncode == 0, proc.stderr
    assert "val acc largest" in proc.stdout and (out / "ckpt" / "checkpoint").exists()
    assert_one_line_error(run_cli("train-supernet", *args), "pass --resume")

    config = SearchSpace.from_dict(TINY).sample(4)
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(config.to_dict()))
    model_path = tmp_path / "model.keras"
    ft = ["finetune", "--supernet", str(out), "--arch", str(arch), "--out", str(model_path), "--epochs", "1",
          "--batch-size", "64", "--train-limit", "256", "--val-limit", "200", "--min-steps", "0"]
    proc = run_cli(*ft)
    assert proc.returncode == 0, proc.stderr
    assert "fine-tuned" in proc.stdout
    model = static_vit.load_vit(model_path)
    assert static_vit.arch_from_model(model) == config
    assert not any(p.name.startswith(".model.keras") for p in tmp_path.iterdir())   # no temp/backup left
    assert_one_line_error(run_cli(*ft), "already exists")

    outside = config.replace(embed_dim=32, mlp_hidden=[32] * config.depth)
    arch.write_text(json.dumps(outside.to_dict()))
    assert_one_line_error(run_cli(*ft, "--force"), "embed_dim: 32 is not one of")
    space.write_text(json.dumps({**TINY, "depth": []}))
    assert_one_line_error(run_cli("train-supernet", *args, "--resume"), "depth: needs at least one choice")


@pytest.mark.slow
def test_cli_stem_space_trains_finetunes_and_converts(tmp_path):
    """A space with a fixed stem, through the pipeline's commands: the supernet trains it, the fine-tuned
    subnet keeps it, and the converter writes it as MCUF_PATCH_EMBED layers with ReLU before the tokenizer."""
    space = tmp_path / "stem.yaml"
    space.write_text(json.dumps({**TINY, "stem": [[3, 2, 8]], "patch_size": [7], "patch_overlap": 2}))
    out, arch, model_path = tmp_path / "sn", tmp_path / "arch.json", tmp_path / "model.keras"
    limits = ["--batch-size", "64", "--train-limit", "256", "--val-limit", "200", "--min-steps", "0"]
    proc = run_cli("train-supernet", "--space", str(space), "--out", str(out), "--epochs", "1", *limits)
    assert proc.returncode == 0, proc.stderr
    config = SearchSpace.load(space).sample(2)
    arch.write_text(json.dumps(config.to_dict()))
    proc = run_cli("finetune", "--supernet", str(out), "--arch", str(arch), "--out", str(model_path),
                   "--epochs", "1", *limits)
    assert proc.returncode == 0, proc.stderr
    assert static_vit.arch_from_model(static_vit.load_vit(model_path)) == config
    proc = run_cli("convert", str(model_path), "--out", str(tmp_path / "model"), "--calib", "50", "--eval", "200",
                   "--no-baseline")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "model" / "report.json").read_text())
    embeds = [(op["options"]["relu"], op["options"]["has_pos"], op["output"]) for op in report["ops"][:2]]
    assert embeds == [(1, 0, "stem0"), (0, 1, "tokens_0")]
    assert report["tensors"][1]["shape"] == [1, 14, 14, 8] and report["tensors"][1]["arena_offset"] == 0
    assert report["int8_accuracy"] > 0.2


@pytest.mark.slow
def test_cli_resumes_exactly_after_sigkill(tmp_path, fashion_mnist):
    """A real kill (SIGKILL during epoch 2), then --resume: same weights as an uninterrupted run."""
    space = tmp_path / "tiny.yaml"
    space.write_text(json.dumps(TINY))
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "mcuformer", "train-supernet", "--space", str(space), "--out", str(out),
            "--epochs", "2", "--batch-size", "64", "--train-limit", "1920", "--val-limit", "200",
            "--num-random", "1", "--seed", "3", "--strategy", "one-device", "--distill", "--augment",
            "--clipnorm", "1.0", "--min-steps", "0"]
    _sigkill_when(args, out / "ckpt" / "ckpt-1.index", settle=0.3)      # into epoch 2 (30 compiled steps)
    assert (out / "ckpt" / "ckpt-1.index").exists() and not (out / "ckpt" / "ckpt-2.index").exists()
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(make(tmp_path / "reference", fashion_mnist, train_limit=1920), out)


@pytest.mark.slow
def test_cli_resumes_exactly_after_sigkill_mid_epoch(tmp_path, fashion_mnist):
    """SIGKILL once a mid-epoch checkpoint exists (epoch 1 of 1 unfinished), then --resume:
    the same weights as an uninterrupted run."""
    space = tmp_path / "tiny.yaml"
    space.write_text(json.dumps(TINY))
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "mcuformer", "train-supernet", "--space", str(space), "--out", str(out),
            "--epochs", "1", "--batch-size", "32", "--train-limit", "1920", "--val-limit", "200",
            "--num-random", "1", "--seed", "3", "--strategy", "one-device", "--distill", "--augment",
            "--clipnorm", "1.0", "--min-steps", "0", "--checkpoint-steps", "4"]     # 60 steps
    _sigkill_when(args, out / "ckpt" / "steps" / "checkpoint")
    assert (out / "ckpt" / "steps" / "checkpoint").exists() and not (out / "ckpt" / "ckpt-1.index").exists()
    saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out / "ckpt" / "steps")))
    position = int(saved.get_tensor("position/.ATTRIBUTES/VARIABLE_VALUE"))
    assert position > 0 and position % 4 == 0
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming epoch 1 at step {position}/60" in resumed.stdout        # not from the start

    _assert_same_weights(make(tmp_path / "reference", fashion_mnist, epochs=1, batch_size=32, train_limit=1920,
                              checkpoint_steps=4), out)


def _sigkill_when(args, ready, settle: float = 0.0) -> None:
    """Start the CLI, SIGKILL it once `ready` exists (plus `settle` seconds), and check it died of that."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(settle)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _assert_same_weights(reference, killed_dir) -> None:
    """An uninterrupted run of `reference` ends on exactly the resumed run's weights."""
    reference.fit()
    killed = load_supernet(killed_dir)
    for a, b in zip(reference.supernet.weights, killed.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.name


MIRRORED_SCRIPT = """
import json, sys
import mcuformer
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from common import datasets
from keras_supernet.space import SearchSpace
from keras_supernet.train import SupernetTrainer, TrainSettings
space, settings = json.loads(sys.argv[2]), json.loads(sys.argv[3])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
SupernetTrainer(SearchSpace.from_dict(space), TrainSettings(**settings), sys.argv[1], datasets.load_fashion_mnist(),
                strategy=strategy, progress=False).fit()
"""


@pytest.mark.slow
def test_two_replica_mirrored_strategy_matches_one_device(tmp_path, fashion_mnist):
    """Loss scaling and gradient all-reduce are right: 2 replicas x 32 images = 1 device x 64."""
    settings = dict(SETTINGS, epochs=1)
    out = tmp_path / "mirrored"
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(out), json.dumps(TINY), json.dumps(settings)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = make(tmp_path / "single", fashion_mnist, epochs=1)
    single.fit()
    mirrored = load_supernet(out)
    moved = 0
    for a, b, start in zip(single.supernet.weights, mirrored.weights, make_initial(fashion_mnist, tmp_path)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5, err_msg=a.name)
        moved += not np.allclose(a.numpy(), start)
    assert moved > len(single.supernet.weights) // 2          # training changed the weights


def make_initial(data, tmp_path):
    return [w.numpy() for w in make(tmp_path / "initial", data, epochs=1).supernet.weights]


def test_resolution_choices_train_and_evaluate(fashion_mnist, tmp_path):
    space = SearchSpace.from_dict({**TINY, "image_size": [16, 28], "patch_size": [4, 7]})
    run = make(tmp_path / "res", fashion_mnist, space=space, epochs=1, sampling="uniform", distill=False,
               train_limit=384)
    history = run.fit()
    assert np.isfinite(history[0]["train_loss"])
    small = space.decode({**space.encode(space.smallest()), "image_size": 16, "patch_size": 4})
    acc = evaluate_subnet(run.supernet, small, run.x_val, run.y_val)       # 28 px data resized to 16 px
    model = export_subnet(run.supernet, small)
    from keras_supernet.finetune import evaluate_model
    assert model.input_shape[1] == 16 and evaluate_model(model, run.x_val, run.y_val) == acc


def test_finetune_resumes_exactly(fashion_mnist, tmp_path):
    from keras_supernet.finetune import finetune_subnet
    from keras_supernet.batches import split_data
    from keras_supernet.supernet import Supernet

    space = SearchSpace.from_dict(TINY)
    supernet, config = Supernet(space, seed=2), space.sample(5)
    x_tr, y_tr, x_val, y_val = split_data(fashion_mnist, 28, 1, train_limit=256, val_limit=100)
    settings = TrainSettings(epochs=2, batch_size=64, sampling="uniform", distill=False, seed=1)
    straight = export_subnet(supernet, config)
    finetune_subnet(straight, x_tr, y_tr, x_val, y_val, settings, progress=False)
    interrupted = export_subnet(supernet, config)
    finetune_subnet(interrupted, x_tr, y_tr, x_val, y_val, settings, backup_dir=tmp_path / "backup",
                    progress=False, stop_after=1)
    resumed = export_subnet(supernet, config)                    # fresh weights: the backup must restore them
    history = finetune_subnet(resumed, x_tr, y_tr, x_val, y_val, settings, backup_dir=tmp_path / "backup",
                              progress=False)
    assert [h["epoch"] for h in history] == [2]
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        assert np.array_equal(a, b)


def test_finetune_never_ends_worse_than_its_start(fashion_mnist):
    """A huge LR wrecks every epoch after the start: the start's weights come back, unchanged."""
    from keras_supernet.finetune import evaluate_model, finetune_subnet
    from keras_supernet.batches import split_data
    from keras_supernet.supernet import Supernet

    space = SearchSpace.from_dict(TINY)
    x_tr, y_tr, x_val, y_val = split_data(fashion_mnist, 28, 1, train_limit=512, val_limit=300)
    model = export_subnet(Supernet(space, seed=2), space.largest())
    finetune_subnet(model, x_tr, y_tr, x_val, y_val, TrainSettings(epochs=2, batch_size=64, sampling="uniform",
                                                                   lr=3e-3, seed=1, min_steps=48), progress=False)
    start_weights, start_acc = [w.copy() for w in model.get_weights()], evaluate_model(model, x_val, y_val)
    assert start_acc > 0.2                                    # a start worth keeping: twice chance

    wrecking = TrainSettings(epochs=3, batch_size=64, sampling="uniform", lr=50.0, weight_decay=0.0, seed=1)
    history = finetune_subnet(model, x_tr, y_tr, x_val, y_val, wrecking, progress=False)
    assert all(r["val_acc"] < start_acc for r in history)    # every later epoch is worse
    assert [r["best_epoch"] for r in history] == [0, 0, 0]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start_weights))
    assert evaluate_model(model, x_val, y_val) == start_acc


def test_best_weights_keep_the_best_epoch_not_the_last():
    from keras_supernet.finetune import BestWeights

    import tf_keras as keras

    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    best = BestWeights(model)
    for epoch, (fill, acc) in enumerate([(0.0, 0.50), (1.0, 0.70), (2.0, 0.60), (3.0, 0.70)]):
        model.set_weights([np.full(w.shape, fill, np.float32) for w in model.get_weights()])
        best.offer(model, acc, epoch)
    model.set_weights([np.full(w.shape, 9.0, np.float32) for w in model.get_weights()])
    best.restore_into(model)
    assert int(best.epoch.numpy()) == 1 and float(best.accuracy.numpy()) == 0.70   # a tie keeps the earlier
    assert all(np.all(w == 1.0) for w in model.get_weights())


def test_step_floor_gives_a_small_folder_its_steps(fashion_mnist, tmp_path):
    """100 images, batch 32 (3 steps a pass), 2 epochs, floor 50 steps: each epoch is 9 passes
    (900 images, 28 steps), 56 optimizer steps in all instead of 6."""
    from keras_supernet.finetune import finetune_subnet
    from keras_supernet.batches import split_data

    run = make(tmp_path / "floor", fashion_mnist, epochs=2, batch_size=32, train_limit=100, min_steps=50,
               sampling="uniform", distill=False)
    run.fit()
    assert int(run.optimizer.iterations) == 56

    space = SearchSpace.from_dict(TINY)
    x_tr, y_tr, x_val, y_val = split_data(fashion_mnist, 28, 1, train_limit=100, val_limit=100)
    settings = TrainSettings(epochs=2, batch_size=32, sampling="uniform", min_steps=50)
    history = finetune_subnet(export_subnet(run.supernet, space.smallest()), x_tr, y_tr, x_val, y_val,
                              settings, progress=False)
    assert history[-1]["optimizer_steps"] == 56
    unfloored = finetune_subnet(export_subnet(run.supernet, space.smallest()), x_tr, y_tr, x_val, y_val,
                                TrainSettings(epochs=2, batch_size=32, sampling="uniform"), progress=False)
    assert unfloored[-1]["optimizer_steps"] == 6


def test_augmentation_by_default_only_when_the_data_is_seen_many_times():
    small = TrainSettings(epochs=5, min_steps=2000)               # 2,000 images: 27 passes an epoch, 135 in all
    assert small.passes_per_epoch(2000) == 27 and small.augments(2000)
    assert not TrainSettings(epochs=10, min_steps=2000).augments(54000)     # 10 passes
    assert TrainSettings(epochs=3, min_steps=2000).passes_per_epoch(54000) == 2    # 421 steps a pass
    assert not TrainSettings(epochs=3, min_steps=2000).augments(54000)      # 6 passes
    assert not TrainSettings(epochs=5, min_steps=2000, augment=False).augments(2000)
    assert TrainSettings(epochs=1, augment=True).augments(54000)
