"""`python -m pipeline.runtime`: the command line (see pipeline.runtime.cli)."""
from pipeline.errors import run_cli
from pipeline.runtime.cli import PROG, main

run_cli(main, PROG)
