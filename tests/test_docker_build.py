"""The image is built from the wheel, its C compiled in the image's own build: `make docker`
works on a host with no C compiler and no compiled library in its tree, and the image still
runs the compiled fast paths.

A container test (`make docker` runs it, after its own build): make docker runs again, with
CC=false, in a copy of the checkout, under another image name. The copy keeps every file's
date and is given the real venv and wheelhouse, which make is told never to remake (-o), and
artifacts built for this session in a temporary folder; so nothing of the user's is rebuilt or
written, and the image build is a cached one but for the artifacts' layer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = [pytest.mark.container, pytest.mark.integration]
IMAGE = "housing-runtime:test-no-compiler"
PLATFORM = os.environ.get("PLATFORM", "linux/amd64")
# Set for the make docker this test runs, so that its own tests do not run this one again.
INNER = "HOUSING_DOCKER_BUILD_INNER"
NATIVE_PROBE = "from housing_runtime.io import native; print(native.LIB is not None)"


def checkout_copy(dest: Path) -> None:
    """The checkout's files, tracked or new but not ignored (so no venv, artifacts, wheelhouse
    or compiled library), with their dates, symlinks as symlinks."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout, so its files are not known: {listed.stderr.decode().strip()}")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if os.path.lexists(source):  # a tracked file deleted in the working tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)


def repo_path(variable: str, default: str) -> Path:
    """A make variable's path as the outer make was given it (make exports command-line
    variables to its recipes), relative to the checkout."""
    return REPO / os.environ.get(variable, default)


@pytest.mark.skipif(os.environ.get(INNER) == "1", reason="the make docker this test runs")
def test_make_docker_without_a_c_compiler_builds_the_library_in_the_image(built_copy, tmp_path):
    """`make docker CC=false` from a tree with no _native*.so builds an image whose runtime
    loads the compiled library: the C is compiled by the image's build, not on the host."""
    tree = tmp_path / "checkout"
    checkout_copy(tree)
    assert not list(tree.rglob("_native*.so"))
    venv = Path(sys.prefix)  # the venv these tests run in: make docker's
    arch = {"linux/amd64": "amd64", "linux/arm64": "arm64"}[PLATFORM]
    wheels = repo_path("WHEELHOUSE", ".wheelhouse") / arch / "runtime" / "runtime.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(CC="false", **{INNER: "1"})
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "docker",
            "CC=false",
            f"VENV={venv}",
            f"WHEELHOUSE={repo_path('WHEELHOUSE', '.wheelhouse')}",
            f"ARTIFACTS={built_copy}",
            f"IMAGE={IMAGE}",
            f"BASE_IMAGE={os.environ.get('BASE_IMAGE', 'python:3.11-slim')}",
            f"PLATFORM={PLATFORM}",
            "PYTEST_ARGS=-k smoke",
            # Never remade, whatever the dates: the user's venv and wheelhouse.
            *("-o", f"{venv}/.installed", "-o", f"{venv}/.test-installed", "-o", str(wheels)),
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    try:
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        assert not list(tree.rglob("_native*.so"))
        run = ["docker", "run", "--rm", "--read-only", "--network", "none", "--platform", PLATFORM]
        probe = subprocess.run(
            [*run, "--entrypoint", "python3", IMAGE, "-c", NATIVE_PROBE], capture_output=True, timeout=120
        )
        assert probe.returncode == 0 and probe.stdout.strip() == b"True", probe.stderr
    finally:
        subprocess.run(["docker", "image", "rm", IMAGE], capture_output=True, timeout=120)
