"""The slim California Housing predictor: onnxruntime and numpy only, no scikit-learn, no pickle.

    housing-runtime                                   # predicts the bundled sample rows
    housing-runtime predict --input homes.csv --model float --format json
    cat homes.csv | housing-runtime --input - --output preds.csv
    housing-runtime serve --artifacts DIR             # KServe V2 over HTTP (extra: serve)

Inputs: CSV with a header naming the 8 features (any column order), JSON Lines of objects,
or a JSON document: a list of records or {"instances": [...]}. Values are cast to float32.
CSV and JSON Lines stream in chunks, so memory stays flat however long the input is.

All or nothing: the whole input is validated and predicted before any output is released.
A bad row anywhere gives one line on stderr naming the line and column, exit code 2, and
no output at all (--output is written to a temporary file and renamed only on success).

The package, by job:
- ``cli``: the command line and its subcommands; ``predict`` the batch command;
- ``io``: input formats (``detect``, ``lines``, ``csv_rows``, ``jsonl``, ``json_document``),
  the output (``sink``, ``floattext``) and the compiled fast paths (``native``, ``native.c``,
  built into the wheel; without them the pure-Python paths give the same bytes);
- ``validate``: what makes a value or a batch acceptable (the one core every front end uses);
- ``model``: the onnxruntime session, after its integrity check (``integrity``);
- ``serving``: the KServe V2 server (extra ``serve``);
- ``spark``: the Spark job (extra ``spark``).

This file imports only the standard library: the training side writes its artifacts with
``files`` and must not load onnxruntime for it.
"""

from __future__ import annotations

from functools import cache

DISTRIBUTION = "housing-runtime"


@cache
def version() -> str:
    """The installed distribution's version (its metadata); 0+unknown when run from a bare source tree.

    Read on demand, not at import: importlib.metadata and the search for the distribution cost
    about 25 ms, which every batch run would pay for a number only --version and the server use."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> str:
    """``housing_runtime.__version__``, computed when first asked for (see ``version``)."""
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
