"""Time and peak memory of a command and every process it starts: Spark's JVM and Python workers
are children of children, so the benchmark becomes their subreaper and samples the whole tree's
resident memory, not only its own child's."""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import tempfile
import time

from benchmarks.runtime import Run
from housing_runtime.errors import UserError

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
SAMPLE_SECONDS = 0.05


def become_subreaper() -> None:
    """Orphaned descendants (Spark's Python workers outlive the JVM by a moment) are re-parented
    to this process, which reaps them, so their CPU time lands in RUSAGE_CHILDREN."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise UserError("cannot become a child subreaper (prctl); the CPU of Spark's workers would be lost")


def process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def tree_rss(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def reap_orphans(seconds: float = 30.0) -> None:
    """Wait for the descendants re-parented to us; kill what is left after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > deadline:
                for child in process_tree(os.getpid())[1:]:
                    os.kill(child, 9)
            time.sleep(SAMPLE_SECONDS)


def measured(cmd: list[str]) -> Run:
    """Run ``cmd`` to its end; its wall time, its whole tree's CPU time and the largest summed
    RSS of the tree seen."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(SAMPLE_SECONDS)
        wall = time.perf_counter() - start
        reap_orphans()
        if proc.returncode != 0:
            err.seek(0)
            raise UserError(f"{' '.join(cmd[:4])} ... failed: {err.read().decode(errors='replace').strip()[-300:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, peak)
