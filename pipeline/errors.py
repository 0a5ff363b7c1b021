"""User-facing errors: one line on stderr, a non-zero exit, no traceback. Standard library only."""
from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Something the user can fix (bad input, missing data, bad option). Exit code 2."""

    exit_code = 2


def run_cli(main: Callable[[list[str] | None], int | None], prog: str) -> None:
    """Run a stage's main(); turn a UserError into one line on stderr and exit 2.

    Errors that only a bug can cause are left to raise with their traceback.
    """
    try:
        code = main(None)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
