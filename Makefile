# Two commands do all the set-up on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export QT_QPA_PLATFORM ?= offscreen
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install run test bench fuzz package package-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[train,test,jax]"
	touch $(STAMP)

install: $(STAMP)

run: QT_QPA_PLATFORM=
run: install
	$(BIN)/brainmri-desktop

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/bench.py

fuzz: install
	$(BIN)/python -m tests.fuzz --count $${FUZZ_COUNT:-10000}

clean:
	rm -rf build dist .pytest_cache

package:
	PYTHON=$(PYTHON) bash packaging/build.sh

package-test: package
	bash packaging/check.sh
