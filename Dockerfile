# The slim runtime image: Python, numpy and onnxruntime (with only what they require), the
# three ONNX models, the manifest, the sample, and the runtime module with its compiled fast
# paths (runtime/src/housing_runtime/io/_native.so, built by make from native.c). No scikit-learn, scipy,
# joblib, skl2onnx, onnx, pip or build tools. Built by `make docker`, which stages a small
# build context and a wheelhouse, so the build needs no network:
#   make docker                                  # python:3.11-slim
#   make docker BASE_IMAGE=housing-base:bookworm # a local Debian base (see .ci/base-image)
ARG BASE_IMAGE=python:3.11-slim

# ---- Stage 1: install numpy and onnxruntime from the wheelhouse, then prune ----------------
FROM ${BASE_IMAGE} AS deps
COPY .wheelhouse/ /wheelhouse/
# A throwaway venv provides pip (Debian's python3 has none); packages go to /opt/site.
# Pruned: onnxruntime's C-API library (the Python binding does not link it) and its training,
# quantization and transformer tools; numpy's f2py, typing stubs, headers and tests.
RUN python3 -m venv /tmp/pip-venv \
 && /tmp/pip-venv/bin/pip install --no-index --find-links /wheelhouse --no-compile \
        --disable-pip-version-check --target /opt/site -r /wheelhouse/runtime-requirements.txt
WORKDIR /opt/site
RUN rm -rf bin onnxruntime/tools onnxruntime/transformers onnxruntime/quantization \
        onnxruntime/datasets onnxruntime/backend onnxruntime/capi/libonnxruntime.so.* \
        numpy/f2py numpy/typing numpy/_pyinstaller numpy/_core/include numpy/_core/lib/pkgconfig \
 && find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
 && find . \( -name '*.pyi' -o -name '*.h' -o -name '*.pxd' \) -delete

# ---- Stage 2: the runtime ------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
# The base's pip, setuptools and wheel are build tools this image has no use for.
RUN rm -rf /usr/local/lib/python3*/site-packages/pip* /usr/local/lib/python3*/site-packages/setuptools* \
        /usr/local/lib/python3*/site-packages/wheel* /usr/local/bin/pip* \
        /usr/lib/python3/dist-packages/pip* /usr/share/python-wheels /usr/lib/python3*/ensurepip
COPY --from=deps /opt/site /opt/site
# The staged context (make docker) holds only the runtime's modules and the image's artifacts.
# Exactly the runtime's code: the shared stdlib-only modules and the runtime package with its
# library (a test checks this list against what the runtime imports).
COPY pipeline/__init__.py pipeline/config.py runtime/src/housing_runtime/errors.py /app/pipeline/
COPY runtime/src/housing_runtime/ /app/runtime/src/housing_runtime/
COPY artifacts/ /app/artifacts/
ENV PYTHONPATH=/opt/site:/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    ARTIFACTS=/app/artifacts
WORKDIR /app
# A numeric non-root user: needs no /etc/passwd entry, so any base works.
USER 10001:10001
ENTRYPOINT ["python3", "-m", "housing_runtime"]
