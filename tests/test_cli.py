from conftest import assert_one_line_error, run_cli

from mcuformer.cli import COMMANDS


def test_help_lists_every_subcommand():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for name in ["train-supernet", "evolve-space", "search", "finetune", "convert", "verify",
                 "build", "arduino-lib", "demo"]:
        assert name in proc.stdout
    assert set(COMMANDS) == {"train-supernet", "evolve-space", "search", "finetune", "convert",
                             "verify", "build", "arduino-lib", "demo"}


def test_console_script_is_installed():
    import shutil
    import sys
    from pathlib import Path
    script = Path(sys.executable).parent / "mcuformer"
    assert script.exists() or shutil.which("mcuformer")


def test_errors_after_tensorflow_loads_are_still_one_line(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    proc = run_cli("convert", str(bad), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "bad.keras")
    assert not (tmp_path / "out").exists()
