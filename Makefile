# arrwdb: `make run` serves on the embedded defaults; `make test` runs the whole suite.
# Both create .venv and install on first use (torch's CPU wheel first, so that pip never pulls a
# multi-GB CUDA build as a dependency), then reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= cpu,dev
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install run test lint unit integration clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# Keep a torch that is already there (a GPU host's CUDA build); else take the CPU wheel.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $(STAMP)

run: install
	$(BIN)/arrwdb serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint
	$(BIN)/python -m pytest -q tests

unit: install
	$(BIN)/python -m pytest -q tests/unit

integration: install
	$(BIN)/python -m pytest -q tests/integration

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
