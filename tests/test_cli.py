import json
import subprocess
import sys
import zipfile

from conftest import assert_one_line_error, run_cli

from mcuformer.cli import COMMANDS


def test_help_lists_every_subcommand():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for name in ["train-supernet", "evolve-space", "search", "train-teacher", "finetune", "convert", "verify",
                 "report", "build", "arduino-lib", "export-cmake", "demo"]:
        assert name in proc.stdout
    assert set(COMMANDS) == {"train-supernet", "evolve-space", "search", "train-teacher", "finetune", "convert",
                             "verify", "report", "build", "arduino-lib", "export-cmake", "demo"}


def test_console_script_is_installed():
    import shutil
    from pathlib import Path
    script = Path(sys.executable).parent / "mcuformer"
    assert script.exists() or shutil.which("mcuformer")


def test_errors_after_tensorflow_loads_are_still_one_line(tmp_path):
    import tf_keras as keras

    not_a_vit = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    not_a_vit.save(tmp_path / "dense.keras")
    proc = run_cli("convert", str(tmp_path / "dense.keras"), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "sequential")
    assert not (tmp_path / "out").exists()


# Each command with one bad argument: (argv, fragment of its error line). Run in one process.
_BAD_ARGUMENTS = [
    (["train-supernet", "--space", "nowhere.yaml", "--out", "o"], "nowhere.yaml does not exist"),
    (["train-supernet", "--space", "{space}", "--out", "o", "--epochs", "0"], "epochs"),
    (["evolve-space", "--supernet", "nowhere", "--board", "stm32f746", "--out", "o"], "not a supernet training"),
    (["search", "--supernet", "nowhere", "--sram", "12XB", "--flash", "1MB", "--out", "o"], "--sram"),
    (["search", "--supernet", "nowhere", "--board", "no_such_board", "--out", "o"], "unknown board"),
    (["finetune", "--supernet", "s", "--arch", "a.json", "--out", "model.h5"], "must end in .keras"),
    (["train-teacher", "--out", "teacher.h5"], "must end in .keras"),
    (["finetune", "--supernet", "s", "--arch", "nowhere.json", "--out", "m.keras"], "nowhere.json does not exist"),
    (["convert", "nowhere.keras", "--out", "o"], "nowhere.keras does not exist"),
    (["convert", "{keras3}", "--out", "o"], "Keras 3"),
    (["convert", "{keras3}", "--out", "o", "--data", "no_such_folder"], "Keras 3"),
    (["verify", "nowhere"], "not a converted model folder"),
    (["report", "nowhere", "--board", "stm32f746"], "not a converted model folder"),
    (["build", "nowhere", "--board", "no_such_board"], "unknown board"),
    (["arduino-lib", "nowhere", "--out", "lib"], "not a converted model folder"),
    (["export-cmake", "nowhere", "--out", "pkg"], "not a converted model folder"),
    (["demo", "--sram", "-5", "--out", "d"], "--sram"),
    (["demo", "--data", "no_such_folder", "--out", "d"], "no_such_folder"),
]

_PROBE = """
import contextlib, io, json, sys
from mcuformer.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    results.append([rc, err.getvalue(), "tensorflow" in sys.modules])
print(json.dumps(results))
"""


def _keras3_file(path):
    """A .keras zip as Keras 3 writes it (metadata says 3.x; its InputLayer uses batch_shape)."""
    config = {"module": "keras", "class_name": "Functional", "config": {"name": "vit", "layers": [
        {"module": "keras.layers", "class_name": "InputLayer",
         "config": {"batch_shape": [None, 28, 28, 1], "dtype": "float32", "name": "image"}}]}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2025-01-01@00:00:00"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"")
    return path


def test_every_command_checks_its_arguments_before_tensorflow_loads(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("name: s\nchannels: 1\nnum_classes: 10\nhead_dim: 8\nimage_size: [28]\npatch_size: [7]\n"
                     "embed_dim: [16]\ndepth: [1]\nnum_heads: [1]\nmlp_ratio: [1]\nrank_ratio: [full]\n")
    fill = {"{space}": str(space), "{keras3}": str(_keras3_file(tmp_path / "k3.keras"))}
    argvs = [[fill.get(a, a) for a in argv] for argv, _ in _BAD_ARGUMENTS]
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argvs)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for (argv, fragment), (rc, err, tensorflow_loaded) in zip(_BAD_ARGUMENTS, json.loads(proc.stdout)):
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, rc, err)
        assert fragment in lines[0], (argv, lines[0])
        assert not tensorflow_loaded, f"{argv[0]} imported TensorFlow before failing on a bad argument"
    assert sorted({argv[0] for argv, _ in _BAD_ARGUMENTS}) == sorted(COMMANDS)
    assert not any(p.name in ("o", "d", "lib", "pkg") for p in tmp_path.iterdir())      # nothing written


def test_a_keras3_model_is_named_with_what_is_accepted(tmp_path):
    proc = run_cli("convert", str(_keras3_file(tmp_path / "subnet.keras")), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "Keras 3.6.0 (Keras 3)", "tf_keras 2 .keras", "SavedModel", "mcuformer finetune")
    assert not (tmp_path / "out").exists()
