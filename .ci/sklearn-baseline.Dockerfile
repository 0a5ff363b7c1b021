# The comparison image for `make bench-image` only: built the same way as the runtime image
# (same base, same offline wheelhouse, same pruning of tests and caches), but predicting with
# scikit-learn from model.joblib, as the reference projects' "runtime" images do.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS deps
COPY .wheelhouse/ /wheelhouse/
RUN python3 -m venv /tmp/pip-venv \
 && /tmp/pip-venv/bin/pip install --no-index --find-links /wheelhouse --no-compile \
        --disable-pip-version-check --target /opt/site -r /wheelhouse/sklearn-requirements.txt
WORKDIR /opt/site
RUN rm -rf bin && find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +

FROM ${BASE_IMAGE}
COPY --from=deps /opt/site /opt/site
COPY artifacts/model.joblib artifacts/sample.csv /app/artifacts/
ENV PYTHONPATH=/opt/site PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["python3", "-c", "import joblib, numpy as np; m = joblib.load('artifacts/model.joblib'); X = np.loadtxt('artifacts/sample.csv', delimiter=',', skiprows=1, ndmin=2); print('prediction'); print('\\n'.join(map(str, m.predict(X))))"]
