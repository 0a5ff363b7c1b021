"""`python -m pipeline.runtime`: the command line (see pipeline.runtime.cli).

Signal handlers go in before numpy and onnxruntime load, and the loading happens inside
run_cli, so that an interrupt during start-up is one line too."""
import os

from pipeline.errors import install_signal_handlers, run_cli

install_signal_handlers()
# numpy starts an OpenBLAS thread per core on import, and they spin: a tenth of a second of CPU
# on every run, for linear algebra the runtime never does (onnxruntime computes, on one thread).
# A user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
PROG = "pipeline.runtime"


def main(argv: list[str] | None) -> int:
    from pipeline.runtime import cli
    return cli.main(argv)


run_cli(main, PROG)
