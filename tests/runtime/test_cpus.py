"""The server's default --workers: the container's CPU limit (cgroup v2 or v1), rounded up,
at most the CPUs the process may run on."""

from __future__ import annotations

import os

import pytest

from housing_runtime.serving import cpus

RUNNABLE = len(os.sched_getaffinity(0))


def cgroup_v2(tmp_path, text: str):
    (tmp_path / "cpu.max").write_text(text + "\n")
    return tmp_path


def cgroup_v1(tmp_path, quota: int, period: int = 100000):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return tmp_path


@pytest.mark.parametrize("text,expected", [("max 100000", None), ("150000 100000", 1.5), ("50000 100000", 0.5)])
def test_cgroup_v2_quota(tmp_path, text, expected):
    assert cpus.quota_cpus(cgroup_v2(tmp_path, text), own="/") == expected


@pytest.mark.parametrize("quota,expected", [(-1, None), (200000, 2.0), (25000, 0.25)])
def test_cgroup_v1_quota(tmp_path, quota, expected):
    assert cpus.quota_cpus(cgroup_v1(tmp_path, quota)) == expected


def test_no_cgroup_files_is_no_limit(tmp_path):
    assert cpus.quota_cpus(tmp_path) is None
    assert cpus.available_cpus(tmp_path) == RUNNABLE


def test_a_fraction_of_a_cpu_rounds_up_as_the_downward_api_does(tmp_path):
    """500m is one worker, as Kubernetes' resourceFieldRef limits.cpu gives 1 for it."""
    assert cpus.available_cpus(cgroup_v2(tmp_path, "50000 100000"), own="/") == 1


def test_the_limit_never_exceeds_the_cpus_the_process_may_run_on(tmp_path):
    assert cpus.available_cpus(cgroup_v2(tmp_path, f"{(RUNNABLE + 3) * 100000} 100000"), own="/") == RUNNABLE


def test_an_unreadable_quota_is_no_limit(tmp_path):
    assert cpus.quota_cpus(cgroup_v2(tmp_path, "garbage"), own="/") is None


def test_a_nested_cgroup_takes_the_smallest_quota_up_to_the_root(tmp_path):
    """On a host, or a container sharing the host's cgroup namespace, the process sits deeper
    than the root: its own limit and its parents' all bind, so the smallest wins."""
    cgroup_v2(tmp_path, "max 100000")
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    slice_ = tmp_path / "app.slice"
    (slice_ / "serve.scope").mkdir(parents=True)
    (slice_ / "cpu.max").write_text("150000 100000\n")
    (slice_ / "serve.scope" / "cpu.max").write_text("max 100000\n")
    assert cpus.quota_cpus(tmp_path, own="/app.slice/serve.scope") == 1.5
    assert cpus.available_cpus(tmp_path, own="/app.slice/serve.scope") == min(2, RUNNABLE)


def test_the_own_cgroup_is_read_from_proc(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("1:cpu:/\n0::/app.slice/serve.scope\n")
    assert cpus.own_cgroup(proc) == "/app.slice/serve.scope"
    assert cpus.own_cgroup(tmp_path / "absent") == "/"
