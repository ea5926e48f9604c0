# Everything a fresh Debian 12/13 machine needs, as root: `make demo`, `make test`.
VENV ?= .venv
PYTHON ?= python3
IMAGE ?= ckptd-example-app:latest
BIN := $(VENV)/bin

.PHONY: venv engine image lint unit test demo clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

engine:
	bash scripts/setup-engine.sh

image: engine
	IMAGE=$(IMAGE) bash examples/cpp-app/build.sh

lint: venv
	$(BIN)/ruff check ckptd tests
	$(BIN)/ruff format --check ckptd tests
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q --ignore=tests/integration

# CI=true makes engine tests fail, not skip, when the engine is missing.
test: venv image lint
	$(BIN)/pytest -v

demo: venv image
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) examples/cpp-app/build
