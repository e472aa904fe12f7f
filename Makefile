# VoxSAE. A newcomer needs two commands: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.voxsae-installed
# this workplace keeps the CPU torch wheel on local disk; elsewhere pip finds it on PyPI
PIP_FLAGS := $(if $(wildcard /opt/wheels/torch-*),--find-links /opt/wheels,)
# system packages: chromium for the browser tests, libfluidsynth3 for FluidSynth hold music.
# Best effort: the demo builds without them (pretty_midi then synthesises the music itself).
APT_PACKAGES := chromium libfluidsynth3
HOST ?= 127.0.0.1
PORT ?= 8501
WORKSPACE ?= demo

.PHONY: demo test setup apt lint bench clean

setup: $(STAMP) apt

$(STAMP): requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -r requirements.txt
	$(BIN)/python -m pip install --no-deps -r requirements-nodeps.txt
	touch $@

apt:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	      || echo "warning: could not install$$missing (browser tests skip, hold music uses pretty_midi's synthesis)"; \
	  fi; \
	else echo "note: not root or no apt-get: skipping system packages ($(APT_PACKAGES))"; fi

demo: setup
	$(BIN)/python -m core demo-corpus --workspace $(WORKSPACE)
	$(BIN)/python -m core summary --workspace $(WORKSPACE)
	$(BIN)/python -m core train --workspace $(WORKSPACE)
	$(BIN)/python -m core analyze --workspace $(WORKSPACE)
	# the same calls embedded a second way (mfcc-stats), so the report can say which features are
	# universal across embedders
	$(BIN)/python -m core demo-corpus --workspace $(WORKSPACE)-mfcc --embedder mfcc-stats --audio-from $(WORKSPACE)
	$(BIN)/python -m core train --workspace $(WORKSPACE)-mfcc --latents 100,200,400 --k 10,20
	$(BIN)/python -m core analyze --workspace $(WORKSPACE)-mfcc
	$(BIN)/python -m core report --workspace $(WORKSPACE) --across $(WORKSPACE)-mfcc
	$(BIN)/python -m core dashboard-cache --workspace $(WORKSPACE)
	@if [ -f app.py ]; then \
	  echo "VoxSAE dashboard: http://$(HOST):$(PORT)  (Ctrl-C stops it)"; \
	  VOXSAE_WORKSPACE=$(WORKSPACE) $(BIN)/streamlit run app.py --server.address $(HOST) --server.port $(PORT); \
	fi

test: setup
	$(BIN)/ruff check $(wildcard core pages tests bench app.py)
	$(BIN)/python -m pytest -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check $(wildcard core pages tests bench app.py)
	$(BIN)/ruff format --check $(wildcard core pages tests bench app.py)

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
