"""Board memory regions as budgets: the flash split (code internal, the model internal or external),
the new boards' profiles, and the search budgeting each region."""
import pytest

from common.boards import load_board
from common.errors import UserError
from keras_supernet.arch import ArchConfig
from keras_supernet.space import SearchSpace
from memory_model.flash_split import split_flash
from memory_model.memory import CODE_FLASH_BYTES, evaluate
from search.budget import Budget
from search.evolution import EvolutionSettings, Search

MiB = 1 << 20


def test_split_keeps_a_model_internal_while_code_and_model_fit():
    s = split_flash(model_bytes=900_000, code_bytes=100_000, internal_capacity=MiB, external_capacity=16 * MiB)
    assert (s.weights_in, s.internal_bytes, s.external_bytes, s.fits) == ("internal", 1_000_000, 0, True)


def test_split_moves_the_model_out_when_code_plus_model_overflow_internal_flash():
    # 1,000,000 + 48,577 = 1,048,577 B: one byte over 1 MiB
    s = split_flash(1_000_000, 48_577, MiB, 16 * MiB)
    assert (s.weights_in, s.internal_bytes, s.external_bytes, s.fits) == ("external", 48_577, 1_000_000, True)
    # exactly 1 MiB stays internal
    assert split_flash(1_000_000, 48_576, MiB, 16 * MiB).weights_in == "internal"


def test_split_without_external_flash_or_beyond_it_does_not_fit():
    s = split_flash(2 * MiB, 100_000, MiB, 0)
    assert (s.weights_in, s.internal_bytes, s.external_bytes, s.fits) == ("internal", 2 * MiB + 100_000, 0, False)
    s = split_flash(17 * MiB, 100_000, MiB, 16 * MiB)
    assert (s.weights_in, s.external_bytes, s.fits) == ("external", 17 * MiB, False)


def test_split_on_request():
    s = split_flash(10_000, 100_000, MiB, 16 * MiB, weights_in="external")
    assert (s.internal_bytes, s.external_bytes) == (100_000, 10_000)
    s = split_flash(2 * MiB, 100_000, MiB, 16 * MiB, weights_in="internal")
    assert (s.weights_in, s.fits) == ("internal", False)
    with pytest.raises(ValueError, match="external flash"):
        split_flash(10_000, 100_000, MiB, 0, weights_in="external")


def test_boards_with_external_flash():
    disco = load_board("stm32f746g-disco")
    assert (disco.sram, disco.flash, disco.clock_mhz) == (320 * 1024, MiB, 216)
    assert (disco.external_flash.size, disco.external_flash.base) == (16 * MiB, 0x9000_0000)
    assert disco.regions() == {"sram": 320 * 1024, "internal_flash": MiB, "external_flash": 16 * MiB}
    eval_board = load_board("stm32h743i-eval")
    assert (eval_board.sram, eval_board.flash) == (512 * 1024, 2 * MiB)
    assert (eval_board.external_flash.size, eval_board.external_flash.base) == (128 * MiB, 0x9000_0000)
    # profiles without the key stay valid and have no external region
    assert load_board("stm32f746").external_flash is None
    assert load_board("stm32f746").regions() == {"sram": 320 * 1024, "internal_flash": MiB}


def test_bad_external_flash(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("name: b\ncore: cortex-m7\nsram: 1KB\nflash: 1MB\nexternal_flash: {size: 16MB}\n")
    with pytest.raises(UserError, match="external_flash: missing required key 'base'"):
        load_board(str(path))
    path.write_text("name: b\ncore: cortex-m7\nsram: 1KB\nflash: 1MB\nexternal_flash: {size: 16MB, base: qspi}\n")
    with pytest.raises(UserError, match="not an address"):
        load_board(str(path))
    path.write_text("name: b\ncore: cortex-m7\nsram: 1KB\nflash: 1MB\nexternal_flash: {size: 16MB, base: '0x90000000'}\n")
    assert load_board(str(path)).external_flash.base == 0x9000_0000


# E192, depth 4, full rank: an int8 model of about 1.8 MB, over 1 MiB of internal flash
BIG = ArchConfig(image_size=224, channels=3, patch_size=16, embed_dim=192, num_classes=1000,
                 num_heads=(3,) * 4, qkv_dim=(192,) * 4, mlp_hidden=(768,) * 4)
SMALL = ArchConfig(image_size=28, channels=1, patch_size=7, embed_dim=32, num_classes=10,
                   num_heads=(2, 2), qkv_dim=(32, 32), mlp_hidden=(64, 64))


def test_budget_admits_a_big_model_only_with_external_flash():
    big, small = evaluate(BIG), evaluate(SMALL)
    assert big.model_bytes > MiB and big.sram < 320 * 1024
    internal_only = Budget.from_args("stm32f746")
    with_qspi = Budget.from_args("stm32f746g-disco")
    assert not internal_only.admits(big) and with_qspi.admits(big)
    assert with_qspi.split(big.model_bytes).to_dict() == {
        "weights_in": "external", "internal_flash_bytes": CODE_FLASH_BYTES, "external_flash_bytes": big.model_bytes,
        "internal_flash_capacity": MiB, "external_flash_capacity": 16 * MiB, "fits": True}
    # the small model fits both and stays internal unless asked
    assert internal_only.admits(small) and with_qspi.admits(small)
    assert with_qspi.split(small.model_bytes).internal_bytes == small.flash
    forced = Budget.from_args("stm32f746g-disco", weights_in="external")
    assert forced.split(small.model_bytes).external_bytes == small.model_bytes
    assert not Budget.from_args("stm32f746g-disco", weights_in="internal").admits(big)
    # external flash is a budget too
    assert not Budget.from_args("stm32f746g-disco", external_flash=f"{big.model_bytes - 1}").admits(big)
    assert Budget.from_args("stm32f746g-disco", external_flash=f"{big.model_bytes}").admits(big)


def test_budget_refuses_external_weights_without_external_flash():
    with pytest.raises(UserError, match="--weights-in external needs external flash"):
        Budget.from_args("stm32f746", weights_in="external")


class ParamsFitness:
    identity = "params"

    def __call__(self, configs):
        return [c.params() / 1e7 for c in configs]


def test_search_on_the_imagenet_space_fits_every_region_of_the_disco(tmp_path):
    space = SearchSpace.load("configs/spaces/mcuformer_imagenet.yaml")
    with pytest.raises(UserError, match="flash 1 MiB < smallest achievable"):
        Search(space, Budget.from_args("stm32f746"), ParamsFitness(), tmp_path / "f746", progress=False)
    budget = Budget.from_args("stm32f746g-disco")
    settings = EvolutionSettings(population=6, generations=2, parents=3, mutations=3, crossovers=3)
    result = Search(space, budget, ParamsFitness(), tmp_path / "disco", settings, progress=False).run()
    assert result["budget"]["external_flash"] == 16 * MiB
    for entry in result["population"]:
        cost, split = entry["cost"], entry["flash_split"]
        assert cost["sram"] <= 320 * 1024
        assert split["internal_flash_bytes"] == CODE_FLASH_BYTES <= MiB           # code alone stays internal
        assert split["external_flash_bytes"] == cost["model_bytes"] <= 16 * MiB   # every ImageNet subnet > 1 MiB
        assert split["weights_in"] == "external" and split["fits"]
