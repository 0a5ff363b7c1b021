"""How many CPUs the server may use: its container's CPU limit where it has one, else the CPUs
it may run on. Standard library only (``options`` reads it before the server's stack loads).

A container's limit is a CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), not fewer
CPUs: ``os.cpu_count()`` and the affinity mask still show the whole machine, so a server sized
on them would run more threads than its quota pays for and be throttled. Kubernetes sets that
quota from ``resources.limits.cpu`` (the manifests pass the same number as ``--workers``, from
the downward API); ``docker run --cpus`` sets it too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def quota_cpus(root: Path = CGROUP) -> float | None:
    """The cgroup's CPU quota in CPUs (1.5 for 150000 us per 100000 us), or None when unlimited
    or unreadable."""
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: a quota of -1 is no limit
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(root: Path = CGROUP) -> int:
    """Whole CPUs this process may use: the quota rounded up (as Kubernetes' downward API rounds
    ``limits.cpu``), at most the CPUs it may run on, at least 1."""
    runnable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = quota_cpus(root)
    limit = runnable if quota is None else min(runnable, math.ceil(quota))
    return max(limit, 1)
