"""How many CPUs the server may use: its container's CPU limit where it has one, else the CPUs
it may run on: the default of `serve --workers`. Standard library only.

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
PROC_CGROUP = Path("/proc/self/cgroup")


def own_cgroup(proc: Path = PROC_CGROUP) -> str:
    """This process's cgroup v2 path: "/" in a container with a cgroup namespace of its own, a
    deeper one on a host (a systemd slice, a container sharing the host's namespace)."""
    try:
        for line in proc.read_text().splitlines():
            if line.startswith("0::"):
                return line[3:] or "/"
    except OSError:
        pass
    return "/"


def v2_quota(root: Path, own: str) -> float | None:
    """The smallest cpu.max quota from the process's own cgroup up to the root, in CPUs: a
    parent's limit binds its children too."""
    folder, quotas = root / own.strip("/"), []
    while True:
        try:  # "max 100000" or "150000 100000"
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota != "max":
                quotas.append(int(quota) / int(period))
        except (OSError, ValueError):
            pass
        if folder == root or root not in folder.parents:
            return min(quotas, default=None)
        folder = folder.parent


def quota_cpus(root: Path = CGROUP, own: str | None = None) -> float | None:
    """The CPU quota in CPUs (1.5 for 150000 us per 100000 us), or None when unlimited or
    unreadable: cgroup v2's cpu.max, else v1's cfs quota."""
    if (root / "cgroup.controllers").exists() or (root / "cpu.max").exists():  # cgroup v2
        return v2_quota(root, own_cgroup() if own is None else own)
    try:  # cgroup v1: a quota of -1 is no limit
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(root: Path = CGROUP, own: str | None = None) -> int:
    """Whole CPUs this process may use: the quota rounded up (as Kubernetes' downward API rounds
    ``limits.cpu``), at most the CPUs it may run on, at least 1."""
    runnable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = quota_cpus(root, own)
    limit = runnable if quota is None else min(runnable, math.ceil(quota))
    return max(limit, 1)
