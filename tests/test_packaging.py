"""The two distributions as users install them: the lock satisfies what each declares, the
runtime wheel is a platform wheel holding only the runtime (the boundary is the packaging), and
a fresh venv gets numpy and onnxruntime from the index and nothing of the training side, then
predicts and serves from any folder. Also the command line's shape: subcommands, predict by
default, --version from the metadata, one line when `serve` lacks its extra.

The fresh-venv tests build the wheels (make wheel into a temporary DIST) and install from the
package index, as a user would: about a minute.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import REPO, make, write_synthetic_artifacts
from server_checks import free_port, serve_command, wait_ready

PYPROJECTS = {"housing-runtime": REPO / "runtime" / "pyproject.toml", "housing-pipeline": REPO / "pyproject.toml"}
# Never in the runtime's environment: the training stack.
TRAINING_STACK = {"scikit-learn", "scipy", "joblib", "skl2onnx", "onnx", "threadpoolctl"}


def project(name: str) -> dict:
    return tomllib.loads(PYPROJECTS[name].read_text())["project"]


def lock(name: str = "requirements.txt") -> dict[str, str]:
    """A requirements file of exact pins as {canonical name: version}."""
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(Requirement(name).name)] = version
    return pins


def declared(name: str) -> list[Requirement]:
    meta = project(name)
    extras = meta.get("optional-dependencies", {})
    return [Requirement(r) for r in meta["dependencies"] + [r for e in ("serve",) for r in extras.get(e, [])]]


@pytest.mark.parametrize("name", PYPROJECTS)
def test_the_lock_satisfies_every_declared_range(name):
    """requirements.txt is the exact lock CI and the image install; each pyproject declares
    compatible ranges, and the lock must fall inside them (the Spark extra has its own pins in
    requirements-spark.txt)."""
    pins = {**lock(), "housing-runtime": project("housing-runtime")["version"]}
    for requirement in declared(name):
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is declared by {name} but not pinned in requirements.txt"
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement} vs the lock's {version}"


def test_the_spark_extra_admits_the_spark_pins():
    pins = lock("requirements-spark.txt")
    for requirement in map(Requirement, project("housing-runtime")["optional-dependencies"]["spark"]):
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)]), requirement


def test_the_spark_pins_change_nothing_the_lock_pins():
    """make spark-env installs requirements-spark.txt into .venv beside the lock: a package both
    pin (grpcio: Spark Connect's client and the server's gRPC) must be pinned alike."""
    lock_pins, spark_pins = lock(), lock("requirements-spark.txt")
    assert {n: v for n, v in spark_pins.items() if lock_pins.get(n, v) != v} == {}


def test_both_distributions_share_one_version_and_the_pipeline_pins_it():
    runtime = project("housing-runtime")["version"]
    assert project("housing-pipeline")["version"] == runtime
    assert f"housing-runtime=={runtime}" in project("housing-pipeline")["dependencies"]


def test_version_comes_from_the_installed_metadata():
    result = subprocess.run(
        [sys.executable, "-m", "housing_runtime", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"housing-runtime {metadata.version('housing-runtime')}"


def test_the_server_reports_the_distributions_version():
    from housing_runtime.serving.rest import RestAdapter

    reply = RestAdapter().handle("GET", "/v2", {}, b"")
    assert json.loads(reply.body)["version"] == metadata.version("housing-runtime")


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Path:
    return write_synthetic_artifacts(tmp_path_factory.mktemp("synthetic_artifacts"))


def run_cli(*args: str, cwd: Path = REPO, exe: list[str] | None = None) -> subprocess.CompletedProcess:
    exe = exe or [sys.executable, "-m", "housing_runtime"]
    return subprocess.run([*exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_predict_is_the_default_command(art):
    default = run_cli("--artifacts", str(art))
    explicit = run_cli("predict", "--artifacts", str(art))
    assert default.returncode == explicit.returncode == 0, default.stderr + explicit.stderr
    assert default.stdout == explicit.stdout and default.stdout.startswith("prediction\n")


def test_the_console_script_and_python_m_are_the_same_command(art):
    script = Path(sys.executable).with_name("housing-runtime")
    assert script.is_file(), "make all installs the runtime (editable) with its console script"
    by_script = run_cli("--artifacts", str(art), exe=[str(script)])
    assert by_script.returncode == 0 and by_script.stdout == run_cli("--artifacts", str(art)).stdout


@pytest.mark.parametrize(
    "args,words",
    [
        (["serve", "--port", "70000"], "--port 70000 is not a port number"),
        (["predict", "--chunk-rows", "0"], "--chunk-rows must be at least 1"),
        (["frobnicate"], "unrecognized arguments: frobnicate"),
        (["serve", "--model", "x"], "unrecognized arguments: --model x"),
    ],
)
def test_a_bad_command_line_is_one_line_and_exit_2(args, words):
    result = run_cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and words in result.stderr and "Traceback" not in result.stderr


# ---- The wheels, installed as a user would -------------------------------------------------


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    dist = tmp_path_factory.mktemp("dist")
    result = make("wheel", f"DIST={dist}", artifacts=tmp_path_factory.mktemp("unused"))
    assert result.returncode == 0, result.stdout + result.stderr
    found = {w.name.split("-")[0]: w for w in dist.glob("*.whl")}
    assert set(found) == {"housing_runtime", "housing_pipeline"}, found
    return found


def test_the_runtime_wheel_is_a_platform_wheel_with_the_compiled_library(wheels):
    name = wheels["housing_runtime"].name
    assert re.fullmatch(r"housing_runtime-[\d.]+-cp311-abi3-(linux|macosx|manylinux)_\w+\.whl", name), name
    files = zipfile.ZipFile(wheels["housing_runtime"]).namelist()
    assert any(re.fullmatch(r"housing_runtime/io/_native\.abi3\.so", f) for f in files), files


def test_each_wheel_ships_only_its_own_side(wheels):
    runtime = zipfile.ZipFile(wheels["housing_runtime"]).namelist()
    pipeline = zipfile.ZipFile(wheels["housing_pipeline"]).namelist()
    assert {f.split("/")[0] for f in runtime if not f.startswith("housing_runtime-")} == {"housing_runtime"}
    assert {f.split("/")[0] for f in pipeline if not f.startswith("housing_pipeline-")} == {"pipeline"}
    assert "pipeline/compat/runner.py" in pipeline and "pipeline/compat/envs/openvino.txt" in pipeline


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin"


def pip_install(bin_dir: Path, *args: str, env: dict | None = None) -> None:
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def installed(bin_dir: Path) -> set[str]:
    listing = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {canonicalize_name(p["name"]) for p in json.loads(listing.stdout)} - {"pip", "setuptools"}


@pytest.fixture(scope="module")
def runtime_venv(wheels, tmp_path_factory) -> Path:
    """A fresh venv with the runtime wheel and what it requires, resolved from the index."""
    bin_dir = fresh_venv(tmp_path_factory.mktemp("venv") / "v")
    pip_install(bin_dir, str(wheels["housing_runtime"]))
    return bin_dir


@pytest.mark.network
def test_a_fresh_install_gets_numpy_onnxruntime_orjson_and_nothing_of_the_training_side(runtime_venv):
    onnxruntime_needs = {
        canonicalize_name(Requirement(r).name) for r in metadata.requires("onnxruntime") or [] if "extra ==" not in r
    }
    got = installed(runtime_venv)
    runtime = {"housing-runtime", "numpy", "onnxruntime", "orjson"}  # orjson: the JSON paths (loads_json)
    assert runtime <= got
    assert got <= runtime | onnxruntime_needs, got
    assert not got & TRAINING_STACK


@pytest.mark.network
def test_the_installed_runtime_predicts_from_any_folder(runtime_venv, art, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text((art / "sample.csv").read_text())
    result = run_cli(
        "--artifacts", str(art), "--input", str(rows), cwd=tmp_path, exe=[str(runtime_venv / "housing-runtime")]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == run_cli("--artifacts", str(art), "--input", str(rows)).stdout
    probe = "from housing_runtime.io import native; print(native.LIB is not None)"
    loaded = subprocess.run(
        [str(runtime_venv / "python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert loaded.stdout.strip() == "True", loaded.stderr


@pytest.mark.network
def test_serve_without_its_extra_names_the_extra_to_install(runtime_venv, art, tmp_path):
    result = run_cli("serve", "--artifacts", str(art), cwd=tmp_path, exe=[str(runtime_venv / "housing-runtime")])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "pip install 'housing-runtime[serve]'" in result.stderr, result.stderr


# Run in the installed runtime's own venv: every module imports, or names a package of the Spark
# extra as what it lacks. The training side is not installed there, so a runtime module that
# imported it would fail here.
IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, housing_runtime
missing = {}
for info in pkgutil.walk_packages(housing_runtime.__path__, "housing_runtime."):
    if info.name.endswith(("__main__", "._native")):  # the command itself; a library for ctypes
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as err:
        missing[info.name] = err.name
print(json.dumps(missing))
"""
SPARK_EXTRA_IMPORTS = {"pyspark", "pyarrow", "pandas"}


@pytest.mark.network
def test_with_the_serve_extra_the_installed_runtime_serves(wheels, runtime_venv, art, tmp_path):
    pip_install(runtime_venv, f"{wheels['housing_runtime']}[serve]")
    assert not installed(runtime_venv) & TRAINING_STACK
    probe = subprocess.run(
        [str(runtime_venv / "python"), "-c", IMPORT_EVERY_MODULE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    missing = json.loads(probe.stdout)
    assert set(missing.values()) <= SPARK_EXTRA_IMPORTS and all(".spark." in m for m in missing), missing
    port = free_port()
    server = subprocess.Popen(
        serve_command(art, port, "--no-access-log", exe=[str(runtime_venv / "housing-runtime")]),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(port, server, "the installed runtime")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=5) as reply:
            assert json.loads(reply.read())["version"] == project("housing-runtime")["version"]
    finally:
        server.terminate()
        assert server.wait(timeout=15) == 0


@pytest.mark.network
def test_a_source_install_without_a_compiler_takes_the_pure_python_paths(tmp_path, art):
    """CC=false: the optional extension fails to build, the install goes on, and the runtime
    predicts the same bytes on its pure-Python paths."""
    bin_dir = fresh_venv(tmp_path / "v")
    source = tmp_path / "runtime"
    subprocess.run(["cp", "-rL", str(REPO / "runtime"), str(source)], check=True)
    for built in [*source.rglob("_native*.so"), *source.rglob("build"), *source.rglob("*.egg-info")]:
        subprocess.run(["rm", "-rf", str(built)], check=True)
    pip_install(bin_dir, str(source), env={"CC": "false"})
    probe = "from housing_runtime.io import native; print(native.LIBRARY)"
    loaded = subprocess.run(
        [str(bin_dir / "python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert loaded.stdout.strip() == "None", loaded.stdout + loaded.stderr
    result = run_cli("--artifacts", str(art), cwd=tmp_path, exe=[str(bin_dir / "housing-runtime")])
    assert result.returncode == 0 and result.stdout == run_cli("--artifacts", str(art)).stdout, result.stderr


@pytest.mark.parametrize("missing", ["uvicorn", "starlette.requests", "prometheus_client"])
def test_a_missing_server_package_names_the_extra(monkeypatch, missing):
    from housing_runtime import cli
    from housing_runtime.errors import UserError

    monkeypatch.setattr("builtins.__import__", failing_import(missing))
    with pytest.raises(UserError, match=re.escape("pip install 'housing-runtime[serve]'")):
        cli.import_server()


def test_a_broken_runtime_module_is_a_bug_not_a_missing_extra(monkeypatch):
    from housing_runtime import cli

    monkeypatch.setattr("builtins.__import__", failing_import("housing_runtime.serving.metrics"))
    with pytest.raises(ImportError) as raised:
        cli.import_server()
    assert raised.value.name == "housing_runtime.serving.metrics"


def failing_import(name: str):
    """An __import__ under which importing the server fails as if ``name`` were absent."""
    real = __import__

    def fake(module, globals=None, locals=None, fromlist=(), level=0):
        if module == "housing_runtime.serving" and "server" in (fromlist or ()):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(module, globals, locals, fromlist, level)

    return fake
