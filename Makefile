# Quick start: `make bench` (set up + default suite + leaderboard) and `make test` (set up + tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: setup bench test clean-cache help

help:
	@echo "make bench   set up, run the default suite and the mitigation track, render leaderboard/ (FORCE=1: re-measure)"
	@echo "make test    set up, run the test suite"

$(STAMP): pyproject.toml
	# submitted detectors run sealed in bubblewrap (libseccomp2 for its filter); as root, install them
	@if ! command -v bwrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2 >/dev/null; \
	  else echo "WARNING: bubblewrap (bwrap) is missing: submitted detectors cannot run sealed; install it (apt-get install bubblewrap)"; fi; \
	fi
	# Fashion-MNIST (the image source of benchmarks/specs/t2i-fashion.toml and of its test) comes from Debian's dataset-fashion-mnist package
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null || \
	      echo "WARNING: dataset-fashion-mnist not installed: the fashion image source and its test are unavailable"; \
	  else echo "NOTE: apt-get install dataset-fashion-mnist for the fashion image source (benchmarks/specs/t2i-fashion.toml)"; fi; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/mmh-bench run --tasks suite:default --detectors all $(if $(FORCE),--force,)
	$(VENV)/bin/mmh-bench mitigate $(if $(FORCE),--force,)
	$(VENV)/bin/mmh-bench leaderboard

test: $(STAMP)
	$(PY) -m pytest -q -ra --durations=25 tests

clean-cache:
	rm -rf $${MMH_BENCH_CACHE:-$$HOME/.cache/mmh-bench}
