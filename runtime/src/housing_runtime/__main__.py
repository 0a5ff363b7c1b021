"""`python -m housing_runtime`: the same command line as `housing-runtime` (see ``cli``)."""

from housing_runtime.cli import run

run()
