"""User-facing errors: one line on stderr, a non-zero exit, no traceback. Standard library only."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable

# Echoed user text (values, keys, paths) is shown as repr and cut to this many characters, so
# that a message stays one line of readable length whatever the input held.
SHOWN_CHARS = 200


class UserError(Exception):
    """Something the user can fix (bad input, missing data, bad option). Exit code 2."""

    exit_code = 2


class EnvironmentFault(UserError):
    """The machine, not the input: a full disk, an I/O error. One line too, exit code 1."""

    exit_code = 1


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP: unwinds like KeyboardInterrupt, so every `finally` and
    context manager removes what it created (temporary files) before the process exits."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def shown(value: object) -> str:
    """``value`` for a one-line message: its repr (quotes, escapes: no raw newlines), capped."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python will print (sys.int_info)
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def shown_json(value: object) -> str:
    """A JSON value for a one-line message, as JSON (escaped, so one line), capped."""
    try:
        text = json.dumps(value)
    except ValueError:  # an integer with more digits than Python will print (sys.int_info)
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


# The signal that arrived, if any: an exception it caused deep inside an import (numpy turns
# it into ImportError) is then reported as the interruption it is.
_received: list[int] = []


def _raise_interrupted(signum: int, _frame) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGINT, SIGTERM and SIGHUP unwind the stack (see Interrupted). Call it first thing, before
    heavy imports, so that a signal during start-up is one line too."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _raise_interrupted)


def _say(message: str) -> None:
    """One line on stderr; nothing if stderr is closed (print would fall back to stdout)."""
    if sys.stderr is not None:
        print(message, file=sys.stderr)


def run_cli(main: Callable[[list[str] | None], int | None], prog: str) -> None:
    """Run a stage's main(); turn a UserError into one line on stderr and its exit code.

    Errors that only a bug can cause are left to raise with their traceback.
    """
    install_signal_handlers()
    try:
        code = main(None)
    except UserError as err:
        _say(f"{prog}: error: {err}")
        sys.exit(err.exit_code)
    except (Interrupted, KeyboardInterrupt) as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        _say(f"{prog}: interrupted ({signal.Signals(signum).name})")
        sys.exit(128 + signum)
    except BaseException:
        if _received:  # raised because of the signal, in code that wrapped it
            _say(f"{prog}: interrupted ({signal.Signals(_received[0]).name})")
            sys.exit(128 + _received[0])
        raise
    sys.exit(code or 0)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (a UserError), not the usage text and a line."""

    def error(self, message: str):
        raise UserError(f"{message}; see --help")
