"""Progress of a long batch run: on a terminal only, at most twice a second, erased at the end;
nothing on a pipe or with --quiet, so that what scripts capture stays clean."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

import numpy as np

from helpers import REPO, write_synthetic_artifacts
from housing_runtime import config
from housing_runtime.progress import INTERVAL_SECONDS, Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_shows_rows_and_rate_at_most_twice_a_second():
    out, clock = Terminal(), Clock()
    progress = Progress(out, clock=clock)
    clock.now += INTERVAL_SECONDS / 2
    progress.update(1000)
    assert out.getvalue() == ""  # too soon
    clock.now += INTERVAL_SECONDS / 2
    progress.update(2000)
    assert out.getvalue() == "\r2,000 rows  4,000 rows/s\x1b[K"
    clock.now += INTERVAL_SECONDS / 4
    progress.update(3000)
    assert out.getvalue().count("rows/s") == 1
    progress.close()
    assert out.getvalue().endswith("\r\x1b[K")  # the line is erased for what comes next


def test_no_progress_on_a_pipe_or_when_quiet():
    pipe, clock = io.StringIO(), Clock()
    for progress in (Progress(pipe, clock=clock), Progress(Terminal(), enabled=False, clock=clock)):
        clock.now += 10
        progress.update(5)
        progress.close()
        assert progress.stream is None
    assert pipe.getvalue() == ""


def test_a_short_run_on_a_terminal_leaves_nothing_behind():
    out = Terminal()
    progress = Progress(out, clock=Clock())
    progress.update(5)
    progress.close()
    assert out.getvalue() == ""


def run_on_a_terminal(args: list[str], stdin: bytes, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """The CLI with stderr on a pseudo-terminal (stdout a pipe): (exit code, stdout, stderr)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "housing_runtime", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, **env},
    )
    os.close(follower)
    out, _ = process.communicate(stdin, timeout=300)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return process.returncode, out, seen


def test_a_long_run_shows_progress_on_a_terminal_and_not_with_quiet(tmp_path):
    art = write_synthetic_artifacts(tmp_path / "art")
    rng = np.random.default_rng(0)
    rows = rng.uniform(1, 10, size=(300_000, config.N_FEATURES))
    lines = [",".join(config.FEATURE_NAMES)] + [",".join(f"{v:.3f}" for v in row) for row in rows]
    text = ("\n".join(lines) + "\n").encode()
    # The pure-Python paths and small chunks: slow enough (seconds) to pass the half-second mark.
    args = ["--artifacts", str(art), "--input", "-", "--chunk-rows", "2000"]
    pure = {"HOUSING_RUNTIME_PURE": "1"}
    code, out, seen = run_on_a_terminal(args, text, pure)
    quiet_code, quiet_out, quiet_seen = run_on_a_terminal([*args, "--quiet"], text, pure)
    assert code == quiet_code == 0, seen + quiet_seen
    assert out == quiet_out and out.count(b"\n") == len(rows) + 1
    assert re.search(rb"\r[\d,]+ rows  [\d,]+ rows/s", seen), seen
    assert seen.endswith(b"\r\x1b[K")
    assert quiet_seen == b""
