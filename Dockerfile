# The slim runtime image: Python, the housing-runtime wheel with its serve extra (numpy,
# onnxruntime, Starlette, uvicorn, prometheus-client and what they require, at the versions of
# requirements.txt), the three ONNX models, the manifest and the sample. No scikit-learn, scipy,
# joblib, skl2onnx, onnx, pip, setuptools or compiler. The wheel is built in the first stage, its
# C compiled there on the image's own base for the image's own architecture, so no binary built
# on the host gets in. The build reaches no Python index: `make docker-context` stages the
# runtime's source, the image's artifacts and a wheelhouse per architecture, made on the host.
#   make docker                                   # python:3.11-slim, linux/amd64
#   make docker BASE_IMAGE=housing-base:bookworm  # a local Debian base (see .ci/base-image)
#   make docker PLATFORM=linux/arm64 BASE_IMAGE=housing-base:bookworm-arm64   # under QEMU
ARG BASE_IMAGE=python:3.11-slim

# ---- Stage 1: pip and the lock's setuptools, from the wheelhouse ---------------------------
FROM ${BASE_IMAGE} AS pip
# The platform being built: amd64 or arm64. BuildKit sets it; make passes it to older builders.
ARG TARGETARCH
COPY wheelhouse/${TARGETARCH}/ /wheelhouse/
# pip from a throwaway venv (Debian's python3 has none); it never reaches the final stage.
RUN python3 -m venv /opt/pip \
 && /opt/pip/bin/pip install --no-index --find-links /wheelhouse --no-compile --disable-pip-version-check \
        -r /wheelhouse/build.txt

# ---- Stage 2: the runtime's wheel, native.c compiled on the target's base --------------------
FROM pip AS wheel
# The compiler comes from the base's own Debian sources, unpinned: the stage is thrown away and
# the wheel's library depends on nothing but libc.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY runtime/ /src/runtime/
# setup.py's Extension is optional (a source install without a compiler still works), so a
# failed compile would only warn: a wheel without the library stops the build here instead.
RUN /opt/pip/bin/pip wheel --no-index --find-links /wheelhouse --no-build-isolation --no-deps \
        --disable-pip-version-check --wheel-dir /dist /src/runtime \
 && /opt/pip/bin/python /src/runtime/check_wheel.py /dist/housing_runtime-*.whl

# ---- Stage 3: the wheel and its pinned requirements in a venv, then pruned -------------------
FROM pip AS site
# A venv without pip, filled by stage 1's pip (--python): the console script's first line then
# names /opt/venv/bin/python, the image's own python3. The requirements first, in their own
# layer, so that a change to the runtime's code reinstalls only the runtime.
RUN python3 -m venv --without-pip /opt/venv \
 && /opt/pip/bin/pip --python /opt/venv/bin/python install --no-index --find-links /wheelhouse --no-compile \
        --disable-pip-version-check -r /wheelhouse/runtime.txt
COPY --from=wheel /dist/ /dist/
# The wheel with its serve extra, held to the same pins: pip checks that they satisfy it.
RUN /opt/pip/bin/pip --python /opt/venv/bin/python install --no-index --find-links /wheelhouse --find-links /dist \
        --no-compile --disable-pip-version-check -c /wheelhouse/runtime.txt "housing-runtime[serve]"
# Pruned: every script but housing-runtime and python itself; onnxruntime's C-API library (the
# Python binding does not link it) and its training, quantization and transformer tools;
# numpy's f2py, typing stubs, headers and tests; grpc's legacy beta API and its framework (the
# server uses grpc.aio; its 17 MB core library is stripped already).
WORKDIR /opt/venv
RUN find bin -mindepth 1 ! -name housing-runtime ! -name 'python*' -delete \
 && rm -f lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* \
 && for part in onnxruntime/tools onnxruntime/transformers onnxruntime/quantization onnxruntime/datasets \
        onnxruntime/backend numpy/f2py numpy/typing numpy/_pyinstaller numpy/_core/include \
        numpy/_core/lib/pkgconfig grpc/beta grpc/framework; do \
      rm -rf lib/python3*/site-packages/"$part"; \
    done \
 && find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
 && find . \( -name '*.pyi' -o -name '*.h' -o -name '*.pxd' \) -delete

# ---- Stage 4: the runtime ------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
# The base's pip, setuptools and wheel are build tools this image has no use for.
RUN rm -rf /usr/local/lib/python3*/site-packages/pip* /usr/local/lib/python3*/site-packages/setuptools* \
        /usr/local/lib/python3*/site-packages/wheel* /usr/local/bin/pip* \
        /usr/lib/python3/dist-packages/pip* /usr/share/python-wheels /usr/lib/python3*/ensurepip
COPY --from=site /opt/venv/ /opt/venv/
COPY artifacts/ /app/artifacts/
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    ARTIFACTS=/app/artifacts
WORKDIR /app
# serve's HTTP (V2 REST) and gRPC (V2 GRPCInferenceService, grpc.health.v1) ports.
EXPOSE 8080 8081
# A numeric non-root user: needs no /etc/passwd entry, so any base works.
USER 10001:10001
ENTRYPOINT ["housing-runtime"]
