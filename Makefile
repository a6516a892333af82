# The two commands:  make demo   (the main job)   and   make test.
# Each does all set-up on a fresh Debian 12 machine (as root): system packages,
# the .venv, the Caffe build (cached under ~/.cache/caffe-losses; a second run
# reuses it within seconds) and the editable install of this package.

VENV   ?= .venv
PY     := $(VENV)/bin/python
export GLOG_minloglevel ?= 2
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup test demo docs-results docs-migrate bench bench-avx2 check-cuda-build check-docker lint clean

setup:
	@bash tools/install_caffe.sh --venv $(VENV)
	@if [ ! -f $(VENV)/.pkg-installed ] || [ setup.py -nt $(VENV)/.pkg-installed ]; then \
	  echo "installing caffe-losses (editable) with its test and demo extras"; \
	  $(PY) -m pip install -q -e '.[test,demo]' && touch $(VENV)/.pkg-installed; \
	fi

# tests/test_wheel.py also builds the wheel and installs it into fresh
# virtualenvs under .venv-wheel/ (reused while the wheel is unchanged).
test: setup
	$(PY) -m pytest -q tests

# each run writes a new demo_out/<date-time>/ (results.json, tables, pictures)
demo: setup
	$(VENV)/bin/caffe-losses demo

# the docs' results tables from the newest demo run (or RESULTS=path/results.json)
docs-results: setup
	$(PY) tools/docs_results.py $(RESULTS)

# docs/migrate.md's tables, from the loss families' declarations (ForkLayer doc, movable)
docs-migrate: setup
	$(PY) tools/docs_migrate.py

# BENCH_ARGS: e.g. --quick, --section e2e, --clock cpu (see bench/run.py --help)
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

# The same as an AVX2-only machine runs it (NumPy's AVX-512 paths off, OpenBLAS as Haswell)
bench-avx2: setup
	$(PY) bench/run.py --avx2 $(BENCH_ARGS)

# Compile and link the CUDA 13 flavour here (no GPU needed), then run a net
# from that build in CPU mode.  For machines without Docker: CI builds the
# same flavour with the same script in the cuda image (check-docker).
check-cuda-build: setup
	@CAFFE_CUDA_ARCH_BIN="75 90" CAFFE_CUDA_ARCH_PTX="" bash tools/install_caffe.sh --cuda --venv $(VENV)-cuda
	$(VENV)-cuda/bin/python -m pip install -q -e .
	GLOG_minloglevel=2 $(VENV)-cuda/bin/python tools/check_build.py --expect-cuda

# Build the cpu and cuda images and use them as a non-root uid on a mounted
# folder, printing build time, size and run time (tools/check_docker.sh; it
# starts its own dockerd when none answers, and stops only that one).
# CAFFE_CUDA_ARCH_BIN / CAFFE_CUDA_ARCH_PTX restrict the cuda image's GPUs.
check-docker:
	@bash tools/check_docker.sh

lint: setup
	$(VENV)/bin/hadolint Dockerfile

clean:
	rm -rf $(VENV) $(VENV)-cuda .venv-wheel demo_out .pytest_cache
