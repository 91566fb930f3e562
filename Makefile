# modgraph: `make book` builds the companion book, `make test` tests everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= auto
NB ?=
P ?=
LAB_FLAGS ?=
FORCE ?=
BOOK_FLAGS := $(if $(filter 1 yes true,$(FORCE)),--force)
# A team copy of CIFAR-10 (one folder per class, JPEG), unpacked into data/ when data/cifar10 is absent.
SHARED_CIFAR10 ?= ../shared/datasets/cifar10-jpeg.tar.gz

.PHONY: setup shared-data browser test book figure lab clean clean-models help plan models test-slurm

help:
	@echo "make book [PROFILE=smoke|quick|fast|paper]   execute changed notebooks, build the book"
	@echo "          [FORCE=1]                          execute a GPU profile's stale notebooks without CUDA"
	@echo "make figure NB=01_curves P='-p k 5'          rerun one notebook with overrides, rebuild"
	@echo "          P=\"-p archs '[vgg11]'\" or P='-p archs [vgg11, vgg16]'   values are YAML"
	@echo "make test                                     unit tests, smoke models as local jobs, smoke book, browser test"
	@echo "make lab                                      JupyterLab on notebooks/ with the project's kernel"
	@echo "make setup | clean | clean-models"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test,lab,cluster]"
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (modgraph)"
	touch $@

shared-data:
	@if [ -f "$(SHARED_CIFAR10)" ] && [ ! -d data/cifar10 ]; then \
		echo "unpacking $(SHARED_CIFAR10) into data/"; mkdir -p data && tmp=$$(mktemp -d data/.unpack.XXXXXX) && \
		tar -xzf "$(SHARED_CIFAR10)" -C $$tmp && mv $$tmp/cifar10 data/cifar10 && rm -rf $$tmp; fi

# Debian's headless Chromium and its driver for the browser test (installed with apt-get when absent).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "installing chromium and chromium-driver (Debian packages) for the browser test"; \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver; }

# Unit tests; the smoke profile's models as local submitit jobs (a second run submits nothing); the whole smoke
# book, which then trains nothing; the checks of what it recorded and the built book opened in headless Chromium.
test: setup shared-data browser
	$(BIN)/python -m pytest -q
	rm -f _build/smoke-requests.jsonl _build/smoke-models-again.txt
	$(BIN)/python -m modgraph models --profile smoke --executor local --poll 1
	mkdir -p _build && set -o pipefail && \
		$(BIN)/python -m modgraph models --profile smoke --executor local --poll 1 | tee _build/smoke-models-again.txt
	MODGRAPH_REQUEST_LOG=$(CURDIR)/_build/smoke-requests.jsonl $(BIN)/python -m modgraph.book build --profile smoke
	$(BIN)/python -m pytest -q -m "browser or built" tests/test_book_browser.py tests/test_plan.py tests/test_cluster.py

book: setup shared-data
	$(BIN)/python -m modgraph.book build --profile $(PROFILE) $(BOOK_FLAGS)

figure: setup shared-data
	@test -n "$(NB)" || { echo "usage: make figure NB=<notebook> [P='-p name value ...'] [PROFILE=...]"; exit 2; }
	$(BIN)/python -m modgraph.book figure $(NB) --profile $(PROFILE) $(BOOK_FLAGS) $(P)

# In Jupyter a chapter runs the profile its parameters cell names (results in results/<profile>-custom/).
lab: setup shared-data
	@echo "JupyterLab on notebooks/ with the kernel 'Python 3 (modgraph)' of $(VENV); open the URL it prints below (Ctrl-C stops it)"
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_FLAGS)

EXECUTOR ?= local
MODELS_FLAGS ?=
PLAN_FLAGS ?=
# The models a profile's notebooks need (cost, stored?; PLAN_FLAGS=--estimate: their training time here); train the missing ones as submitit jobs.
plan: setup
	$(BIN)/python -m modgraph plan --profile $(PROFILE) $(PLAN_FLAGS)

models: setup
	$(BIN)/python -m modgraph models --profile $(PROFILE) --executor $(EXECUTOR) $(MODELS_FLAGS)

# A single-node Slurm on this machine (root), the smoke plan through it (8 min measured on a busy 2-core machine).
test-slurm: setup
	PYTHON=$(BIN)/python bash benchmarks/slurm_local.sh

# Build outputs only: the committed results (and stamps) of GPU profiles stay.
clean:
	rm -rf _build results/smoke/stamps results/quick/stamps results/*-custom

clean-models:
	rm -rf data/models
