# The two commands a newcomer runs: `make demo` (the main job) and `make test`.
# Both install what they need: Debian packages (as root) and a .venv here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := dataset-fashion-mnist gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake

.PHONY: demo test setup apt clean tflm tflm-or-skip

demo: setup tflm-or-skip
	$(BIN)/mcuformer demo

test: setup tflm-or-skip
	$(BIN)/python -m pytest -q

setup: apt $(VENV)/.installed

# The pinned TFLM tree (cloned into the cache once) and its microlite libraries
# for the host and Cortex-M7; the TFLM tests skip without them.
tflm: setup
	$(BIN)/python -m deploy.tflm_make

# The same, for `make test` and `make demo`: where the tree cannot be had, one line says what skips.
tflm-or-skip: setup
	@$(BIN)/python -m deploy.tflm_make --or-skip

apt:
	@bash scripts/apt_install.sh $(APT_PACKAGES)

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

clean:
	rm -rf $(VENV) out .pytest_cache
