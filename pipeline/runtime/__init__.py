"""The slim predictor: onnxruntime and numpy only, no scikit-learn, no pickle.

    python -m pipeline.runtime                              # predicts the bundled sample rows
    python -m pipeline.runtime --input homes.csv --model float --format json
    cat homes.csv | python -m pipeline.runtime --input - --output preds.csv

Inputs: CSV with a header naming the 8 features (any column order), JSON Lines of objects,
or a JSON document: a list of records or {"instances": [...]}. Values are cast to float32.
CSV and JSON Lines stream in chunks, so memory stays flat however long the input is.

All or nothing: the whole input is validated and predicted before any output is released.
A bad row anywhere gives one line on stderr naming the line and column, exit code 2, and
no output at all (--output is written to a temporary file and renamed only on success).

One module per job:
- ``readers``: input files and streams -> float64 chunks in model feature order;
- ``validate``: what makes a value or a batch acceptable (the one core every front end uses);
- ``model``: the onnxruntime session, after its integrity check (``integrity``);
- ``sink``: where predictions go, all or nothing (``files`` holds the atomic write,
  ``floattext`` the predictions' text);
- ``native``: the compiled fast paths (``native.c``, built by `make native`) for plain CSV and
  JSON Lines rows and the predictions' text; anything not plain takes the Python path, so the
  output is the same bytes with the library or without it;
- ``cli``: the command line.

Imports only the standard library (ctypes loads the library), numpy, onnxruntime and the shared
``pipeline.config`` and ``pipeline.errors``: never the training side (a test checks this against the Dockerfile).
This file imports nothing: the training side writes its artifacts with ``files`` and must not
load onnxruntime for it.
"""
