"""`python -m pipeline.runtime`: the command line (see pipeline.runtime.cli).

Signal handlers go in before numpy and onnxruntime load, and the loading happens inside
run_cli, so that an interrupt during start-up is one line too."""
from pipeline.errors import install_signal_handlers, run_cli

install_signal_handlers()
PROG = "pipeline.runtime"


def main(argv: list[str] | None) -> int:
    from pipeline.runtime import cli
    return cli.main(argv)


run_cli(main, PROG)
