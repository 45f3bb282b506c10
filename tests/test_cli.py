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
