import pytest

from common.boards import available_boards, load_board
from common.errors import UserError
from common.units import format_bytes, parse_bytes


@pytest.mark.parametrize("text,expected", [
    ("320KB", 327680), ("320KiB", 327680), ("327680", 327680), (327680, 327680),
    ("320 kb", 327680), ("1MB", 1048576), ("1MiB", 1048576), ("2M", 2097152), ("0.5MiB", 524288),
    ("64K", 65536), ("100B", 100),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "320XB", "-5", "0", "1.5B", "KB320", True])
def test_parse_bytes_rejects(text):
    with pytest.raises(UserError, match="budget"):
        parse_bytes(text)


def test_format_bytes():
    assert format_bytes(1048576) == "1 MiB"
    assert format_bytes(327680) == "320 KiB"
    assert format_bytes(100) == "100 B"


def test_builtin_boards():
    assert {"stm32f746", "stm32h743", "stm32f427"} <= set(available_boards())
    f746 = load_board("stm32f746")
    assert (f746.sram, f746.flash, f746.core, f746.fpu) == (320 * 1024, 1024 * 1024, "cortex-m7", "fpv5-sp-d16")
    assert load_board("stm32h743").sram == 512 * 1024
    assert load_board("stm32f427").core == "cortex-m4"


def test_user_board_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ncore: cortex-m7\nsram: 200KB\nflash: 512KiB\n")
    board = load_board(str(path))
    assert (board.name, board.sram, board.flash) == ("mine", 204800, 524288)


def test_bad_boards(tmp_path):
    with pytest.raises(UserError, match="unknown board 'stm32zz'.*stm32f746"):
        load_board("stm32zz")
    bad_key = tmp_path / "b.yaml"
    bad_key.write_text("name: b\ncore: cortex-m7\nsram: 1KB\nflash: 1MB\nram: 3\n")
    with pytest.raises(UserError, match="unknown key 'ram'"):
        load_board(str(bad_key))
    bad_size = tmp_path / "c.yaml"
    bad_size.write_text("name: c\ncore: cortex-m7\nsram: lots\nflash: 1MB\n")
    with pytest.raises(UserError, match="sram"):
        load_board(str(bad_size))
    missing = tmp_path / "d.yaml"
    missing.write_text("name: d\ncore: cortex-m7\nflash: 1MB\n")
    with pytest.raises(UserError, match="missing required key 'sram'"):
        load_board(str(missing))
    not_yaml = tmp_path / "e.yaml"
    not_yaml.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid"):
        load_board(str(not_yaml))
