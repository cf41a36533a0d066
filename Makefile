# Two commands do all the set-up on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export QT_QPA_PLATFORM ?= offscreen

.PHONY: install run test bench fuzz package package-test clean orthanc gpu-pack gpu-unpack

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[train,test,jax,batch]"
	touch $(STAMP)

install: $(STAMP)

run: QT_QPA_PLATFORM=
run: install
	$(BIN)/brainmri-desktop

# The PACS tests start their own Orthanc (tests/orthanc.py): installed here when missing and allowed (root with
# apt-get), else the exact command is printed and those tests fail saying the same.
ORTHANC_PACKAGES := orthanc orthanc-dicomweb
export ORTHANC_BIN ?= /usr/sbin/Orthanc
export ORTHANC_DICOMWEB_PLUGIN ?= /usr/share/orthanc/plugins/libOrthancDicomWeb.so
orthanc:
	@if [ -x "$(ORTHANC_BIN)" ] && [ -f "$(ORTHANC_DICOMWEB_PLUGIN)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(ORTHANC_PACKAGES); \
	else echo "PACS tests need Orthanc with its DICOMweb plugin; install it with: sudo apt-get install $(ORTHANC_PACKAGES)"; fi

test: install orthanc
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

# Training on the GPU machine (docs/GPU_TRAINING.md): `make gpu-pack CONFIG=trainer/configs/x.toml`, the device calls,
# then `make gpu-unpack FILES=<folder the files came back in> RUN=runs/<name>` and `brainmri-train export RUN`.
gpu-pack: install
	bash scripts/gpu/pack.sh $(CONFIG)

gpu-unpack: install
	bash scripts/gpu/unpack.sh $(FILES) $(RUN)
