import pytest

from common.atomic import atomic_dir, atomic_path, write_json, write_text
from common.errors import UserError


def test_write_is_atomic(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_json(target, {"x": 1})
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    write_text(target, "old")

    class Boom(Exception):
        pass

    def explode(self, data):
        raise Boom()

    monkeypatch.setattr("pathlib.Path.write_bytes", explode)
    with pytest.raises(Boom):
        write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("1")
    assert (out / "f").read_text() == "1"
    with pytest.raises(UserError, match="--force"):
        with atomic_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_dir(out, force=True) as tmp:
            (tmp / "g").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == ["f"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_dir(out, force=True) as tmp:
        (tmp / "g").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["g"]


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_get_the_users_umask(tmp_path, umask, file_mode, dir_mode):
    import os
    import stat

    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "out" / "f").stat().st_mode) == file_mode


def test_a_failed_output_leaves_no_parent_folders_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "model" / "build" / "board") as tmp:
            (tmp / "half").write_text("1")
            raise RuntimeError("compiler failed")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a" / "b.json"):
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
