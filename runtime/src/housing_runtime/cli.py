"""The command line, `housing-runtime` (also `python -m housing_runtime`):

    housing-runtime [predict] [--input PATH] [--output PATH] ...   # the batch CLI (the default)
    housing-runtime serve [--port 8080] ...                        # KServe V2 over HTTP
    housing-runtime --version

With no subcommand the arguments are predict's, so invocations from before the subcommands
keep working. Signal handlers go in before numpy and onnxruntime load, and the loading happens
inside ``run``, so that an interrupt during start-up is one line too.
"""

from __future__ import annotations

import argparse
import os
import sys

from housing_runtime import version
from housing_runtime.errors import OneLineArgumentParser, UserError, install_signal_handlers, run_cli

PROG = "housing-runtime"
COMMANDS = ("predict", "serve")
# The server's stack comes with the `serve` extra; these are the packages it imports.
SERVE_EXTRA = "housing-runtime[serve]"
SERVE_PACKAGES = frozenset(
    {"starlette", "uvicorn", "h11", "prometheus_client", "anyio", "grpc", "grpc_health", "google"}
)


class VersionAction(argparse.Action):
    """--version, with the version read only when it is asked for (``housing_runtime.version``)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"{parser.prog} {version()}")  # on stdout, as argparse's own version action
        parser.exit()


def build_parser() -> tuple[OneLineArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's parser by name (they refuse bad values)."""
    from housing_runtime import predict
    from housing_runtime.serving import options

    parser = OneLineArgumentParser(
        prog=PROG,
        description="Predict California Housing values with onnxruntime, "
        "in batch or as a KServe V2 server. With no command, predict.",
    )
    parser.add_argument("--version", action=VersionAction, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="{predict,serve}", parser_class=OneLineArgumentParser)
    by_name: dict[str, argparse.ArgumentParser] = {
        "predict": commands.add_parser(
            "predict",
            help="predict a CSV, JSON Lines or JSON file, all or nothing (the default)",
            description="Predict California Housing values with onnxruntime, all or nothing.",
        ),
        "serve": commands.add_parser(
            "serve",
            help="serve the models over KServe V2 HTTP (needs the serve extra)",
            description="Serve the three models over KServe V2 (and V1) HTTP.",
        ),
    }
    predict.add_arguments(by_name["predict"])
    options.add_arguments(by_name["serve"])
    return parser, by_name


def with_command(argv: list[str]) -> list[str]:
    """``argv`` with `predict` in front unless it names a command or asks the top level for help
    or the version."""
    if argv[:1] and (argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["predict", *argv]


def import_server():
    """The server module, or one line naming the extra to install when its stack is missing."""
    try:
        from housing_runtime.serving import server
    except ImportError as err:
        missing = err.name or ""
        if missing.split(".")[0] not in SERVE_PACKAGES:  # not the extra: a bug, with its traceback
            raise
        raise UserError(
            f"`{PROG} serve` needs the server's packages, and {missing!r} is not installed; "
            f"install them with: pip install '{SERVE_EXTRA}'"
        ) from None
    return server


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, by_name = build_parser()
    args = parser.parse_args(with_command(argv))
    command_parser = by_name[args.command]
    if args.command == "serve":
        from housing_runtime.serving import options

        options.check(command_parser, args)
        return import_server().main(args)
    from housing_runtime import predict

    predict.check(command_parser, args)
    return predict.main(args)


def run() -> None:
    """The console script's entry point: one line on stderr for any error a user can cause."""
    install_signal_handlers()
    # numpy starts an OpenBLAS thread per core on import, and they spin: a tenth of a second of
    # CPU on every run, for linear algebra the runtime never does (onnxruntime computes, on one
    # thread). A user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    run_cli(main, PROG)
