"""Container tests: run the built runtime image for real. They run when a Docker engine is
reachable and the image exists; `make docker` builds the image and requires them to run.

For an image of another architecture (make docker PLATFORM=linux/arm64 on an x86_64 machine),
`make docker` runs only the smoke tests, under QEMU: the rest compare with this machine's
onnxruntime bit for bit, which another architecture's kernels need not match.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import subprocess
import time
import uuid

import numpy as np
import onnxruntime as ort
import pytest

import housing_runtime
from helpers import require_image
from pipeline import config

pytestmark = pytest.mark.container
IMAGE = os.environ.get("IMAGE", "housing-runtime:latest")
BASE_IMAGE = os.environ.get("BASE_IMAGE", "python:3.11-slim")
PLATFORM = os.environ.get("PLATFORM", "")
# docker run's arguments for the image's platform, as make docker passes it (so docker run need
# not guess), and under emulation the processor description below (the image fixture adds it).
PLATFORM_ARGS = ["--platform", PLATFORM] if PLATFORM else []
# Every run is as locked down as the README recommends.
RUN = ["docker", "run", "--rm", "-i", "--read-only", "--network", "none", *PLATFORM_ARGS]
SIZE_GOAL_BYTES = 120 * 1000 * 1000
# Generous: under QEMU, loading numpy and onnxruntime alone takes several seconds.
SMOKE_READY_SECONDS = 180
RUN_SECONDS = 120
# QEMU 7.2 (Debian 12's qemu-user-static) hands an emulated process this machine's own
# /proc/cpuinfo, and onnxruntime's aarch64 CPU detection crashes on an x86 one at import (newer
# QEMU answers with a description of its own). An emulated run gets this one, a Neoverse N1's.
AARCH64_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""
MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


def docker(*args, stdin: bytes | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def image(tmp_path_factory):
    require_image(IMAGE)
    host = {"arm64": "aarch64", "amd64": "x86_64"}.get(platform.machine(), platform.machine())
    machine = MACHINES.get(PLATFORM, host)
    if machine == "aarch64" and machine != host:
        cpuinfo = tmp_path_factory.mktemp("emulation") / "cpuinfo"
        cpuinfo.write_text(AARCH64_CPUINFO)
        mount = ["--volume", f"{cpuinfo}:/proc/cpuinfo:ro"]
        PLATFORM_ARGS.extend(mount)
        RUN.extend(mount)
    return IMAGE


def run_image(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """`docker run IMAGE args`; a run that outlives RUN_SECONDS is removed, not left running."""
    name = f"housing-test-{uuid.uuid4().hex[:12]}"
    try:
        return subprocess.run(
            [*RUN, "--name", name, IMAGE, *args],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=RUN_SECONDS,
        )
    except subprocess.TimeoutExpired:
        docker("rm", "-f", name)
        raise


def image_file(path: str, tmp_path) -> os.PathLike:
    result = subprocess.run([*RUN, "--entrypoint", "cat", IMAGE, path], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    dest = tmp_path / os.path.basename(path)
    dest.write_bytes(result.stdout)
    return dest


def host_predictions(model_path, X) -> np.ndarray:
    sess = ort.InferenceSession(str(model_path))  # the host's default session
    return sess.run(None, {sess.get_inputs()[0].name: np.asarray(X, dtype=np.float32)})[0].reshape(-1)


def csv_predictions(stdout: bytes) -> np.ndarray:
    lines = stdout.decode().split()
    assert lines[0] == "prediction"
    return np.array(lines[1:], dtype=np.float32)


def answers_ready(port: int, container: str, seconds: float) -> bool:
    """Whether GET /v2/health/ready on 127.0.0.1:port answers 200 within ``seconds``, while
    the container keeps running."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        if docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip() != b"true":
            return False
        time.sleep(0.5)
    return False


def test_smoke_predicts_the_bundled_sample():
    """`docker run IMAGE` predicts the sample it bundles: exit 0, one prediction a row."""
    result = run_image()
    assert result.returncode == 0, result.stderr
    assert len(csv_predictions(result.stdout)) == config.SAMPLE_ROWS


def test_smoke_serve_answers_ready():
    """`IMAGE serve` on free ports of the host's network answers /v2/health/ready, and its gRPC
    health service SERVING; the container is stopped by its id whatever happens."""
    import grpc_checks
    import server_checks

    port, grpc_port = server_checks.free_port(), server_checks.free_port()
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port)]
    started = docker("run", "-d", "--read-only", "--network", "host", *PLATFORM_ARGS, IMAGE, *serve)
    assert started.returncode == 0, started.stderr
    container = started.stdout.decode().strip()
    try:
        ready = answers_ready(port, container, SMOKE_READY_SECONDS)
        assert ready, docker("logs", container).stderr.decode()[-2000:]
        grpc_checks.check_health(grpc_port)
    finally:
        docker("rm", "-f", container)


def test_the_runtime_is_the_installed_wheel_and_its_console_script():
    """The entry point is the wheel's console script, found on PATH, whose first line names the
    venv's python (the base's python3), and the package imports from the venv's site-packages."""
    probe = 'script=$(command -v housing-runtime) && echo "$script" && head -n 1 "$script"'
    result = subprocess.run([*RUN, "--entrypoint", "sh", IMAGE, "-c", probe], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["/opt/venv/bin/housing-runtime", "#!/opt/venv/bin/python"]
    probe = (
        "import importlib.metadata, housing_runtime; "
        "print(importlib.metadata.version('housing-runtime'), housing_runtime.__file__)"
    )
    result = subprocess.run([*RUN, "--entrypoint", "python3", IMAGE, "-c", probe], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    version, path = result.stdout.decode().split()
    assert version == housing_runtime.__version__
    assert path.startswith("/opt/venv/lib/python3") and "/site-packages/housing_runtime/" in path


def test_sample_predictions_equal_host_onnxruntime(tmp_path):
    result = run_image()
    assert result.returncode == 0, result.stderr
    model = image_file("/app/artifacts/model_uint8.onnx", tmp_path)
    sample = image_file("/app/artifacts/sample.csv", tmp_path)
    X = np.loadtxt(sample, delimiter=",", skiprows=1, ndmin=2)
    assert len(X) == config.SAMPLE_ROWS
    np.testing.assert_array_equal(csv_predictions(result.stdout), host_predictions(model, X))


def test_user_csv_through_stdin_any_column_order(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)) * [2, 12, 2, 0.4, 1100, 10, 2, 2] + [4, 28, 5, 1, 1400, 3, 35, -120]
    order = list(reversed(range(8)))
    header = ",".join(config.FEATURE_NAMES[i] for i in order)
    body = "\n".join(",".join(repr(float(v)) for v in row[order]) for row in X)
    result = run_image("--input", "-", stdin=f"{header}\n{body}\n".encode())
    assert result.returncode == 0, result.stderr
    model = image_file("/app/artifacts/model_uint8.onnx", tmp_path)
    np.testing.assert_array_equal(csv_predictions(result.stdout), host_predictions(model, X))


def test_float_model_json_output(tmp_path):
    result = run_image("--model", "float", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"] == "float"
    model = image_file("/app/artifacts/model_float.onnx", tmp_path)
    sample = image_file("/app/artifacts/sample.csv", tmp_path)
    X = np.loadtxt(sample, delimiter=",", skiprows=1, ndmin=2)
    # JSON carries float32 values as their shortest repr, which parses back to the same float32.
    np.testing.assert_array_equal(np.array(doc["predictions"], dtype=np.float32), host_predictions(model, X))


def test_bad_csv_exits_2_with_one_line_and_no_output():
    bad = (",".join(config.FEATURE_NAMES) + "\n1,2,3,4,5,6,7,abc\n").encode()
    result = run_image("--input", "-", stdin=bad)
    err = result.stderr.decode().strip()
    assert result.returncode == 2 and result.stdout == b""
    assert len(err.splitlines()) == 1 and "line 2, column 8" in err and "Traceback" not in err


def test_the_image_runs_the_compiled_fast_paths():
    """The library the image's own build compiled loads in it: a silent fall back to the
    pure-Python paths would cost 2-3x the time."""
    probe = "from housing_runtime.io import native; print(native.LIB is not None)"
    result = subprocess.run([*RUN, "--entrypoint", "python3", IMAGE, "-c", probe], capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == b"True", result.stderr


def test_no_training_stack_pip_or_build_tools_in_the_image():
    probe = (
        "import importlib.util, json; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in "
        "['sklearn', 'scipy', 'joblib', 'skl2onnx', 'onnx', 'pip', 'setuptools', 'numpy', 'onnxruntime']}))"
    )
    result = subprocess.run([*RUN, "--entrypoint", "python3", IMAGE, "-c", probe], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found.pop("numpy") and found.pop("onnxruntime")
    assert not any(found.values()), found
    result = subprocess.run(
        [*RUN, "--entrypoint", "python3", IMAGE, "-c", "import sklearn"], capture_output=True, timeout=60
    )
    assert result.returncode != 0 and b"ModuleNotFoundError" in result.stderr
    tools = subprocess.run(
        [*RUN, "--entrypoint", "sh", IMAGE, "-c", "command -v pip pip3 gcc cc make || true"],
        capture_output=True,
        timeout=60,
    )
    assert tools.stdout.strip() == b""


def test_image_holds_no_pycache_tests_or_unused_onnxruntime_parts():
    listing = subprocess.run(
        [
            *RUN,
            "--entrypoint",
            "sh",
            IMAGE,
            "-c",
            "find /opt/venv /app -name __pycache__ -o -name tests -o -name 'libonnxruntime.so*' "
            "-o -path '*/onnxruntime/transformers' -o -path '*/onnxruntime/quantization' "
            "-o -path '*/onnxruntime/tools'",
        ],
        capture_output=True,
        timeout=60,
    )
    assert listing.returncode == 0 and listing.stdout.strip() == b"", listing.stdout.decode()


def test_runs_as_non_root():
    result = subprocess.run([*RUN, "--entrypoint", "id", IMAGE, "-u"], capture_output=True, timeout=60)
    assert result.returncode == 0 and int(result.stdout) != 0


def test_layers_over_the_base_within_the_size_goal():
    def size(ref):
        out = docker("image", "inspect", "--format", "{{.Size}}", ref)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    added = size(IMAGE) - size(BASE_IMAGE)
    assert added <= SIZE_GOAL_BYTES, f"{added / 1e6:.1f} MB added over {BASE_IMAGE}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`docker run --read-only IMAGE serve` on a free port of the host's network, and the
    image's own model files (for the reference predictions)."""
    import server_checks

    port, grpc_port = server_checks.free_port(), server_checks.free_port()
    started = docker(
        "run",
        "-d",
        "--read-only",
        "--network",
        "host",
        *PLATFORM_ARGS,
        IMAGE,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-rows",
        "5000",
        "--grpc-port",
        str(grpc_port),
        "--max-body-bytes",
        "2000000",
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.decode().strip()
    folder = tmp_path_factory.mktemp("image-models")
    models = {v: image_file(f"/app/artifacts/{config.ONNX_NAMES[v]}", folder) for v in config.MODEL_VARIANTS}
    try:
        server_checks.wait_ready(port, None, f"the {IMAGE} container", 60)
    except Exception:
        docker("rm", "-f", container)
        raise
    client = server_checks.triton.InferenceServerClient(f"127.0.0.1:{port}")
    yield container, port, client, models, grpc_port
    docker("rm", "-f", container)


def test_the_image_passes_the_servers_conformance_checks(served):
    """The host tests' checks (tests/server_checks.py), against the container: tritonclient's
    health, metadata and infer in every binary/JSON combination, equal to the host's
    onnxruntime on the image's own model files; and every bad request's 4xx."""
    import server_checks

    _, port, client, models, _ = served
    server_checks.check_health_and_metadata(client)
    for rows, binary_in, binary_out in server_checks.INFER_MODES:
        server_checks.check_infer(client, lambda v, X: host_predictions(models[v], X), rows, binary_in, binary_out)
    for case in server_checks.BAD_REQUESTS:
        server_checks.check_bad_request(port, *case)


def test_the_image_passes_the_grpc_conformance_checks(served, tmp_path):
    """The host's gRPC checks (tests/grpc_checks.py) against the container: tritonclient[grpc]'s
    metadata and raw and typed infer equal to the host's onnxruntime on the image's own model
    files, the health service, and every refusal's code and words."""
    import grpc_checks

    _, _, _, models, grpc_port = served
    for variant in config.MODEL_VARIANTS:
        grpc_checks.check_tritonclient_conformance(
            grpc_port, variant, lambda v, X: host_predictions(models[v], X), tmp_path
        )
    grpc_checks.check_health(grpc_port)
    grpc_checks.check_unknown_models(grpc_port)
    for case in grpc_checks.BAD_INFERS:
        grpc_checks.check_bad_infer(grpc_port, *case)


def test_sigterm_under_load_answers_every_request_and_exits_cleanly(served):
    """`docker stop` (SIGTERM) while four clients keep sending: every answer given is a 200
    (connections the server closes or refuses are not answers), and the container exits with
    code 0 within the 10 s it promises."""
    import http.client
    import threading

    import server_checks

    container, port, _, _, _ = served
    body = server_checks.infer_body(server_checks.ROW)
    statuses, stop_sending = [], threading.Event()

    def client_loop() -> None:
        while not stop_sending.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
                for _ in range(50):
                    conn.request("POST", "/v2/models/uint8/infer", body)
                    response = conn.getresponse()
                    response.read()
                    statuses.append(response.status)
            except (OSError, http.client.HTTPException):  # closed or refused during shutdown
                time.sleep(0.01)

    clients = [threading.Thread(target=client_loop) for _ in range(4)]
    for t in clients:
        t.start()
    time.sleep(1.0)
    stopping = time.monotonic()
    stopped = docker("stop", "-t", "15", container)
    took = time.monotonic() - stopping
    stop_sending.set()
    for t in clients:
        t.join(timeout=30)
    assert stopped.returncode == 0
    assert took < 10, f"docker stop took {took:.1f} s"
    code = docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout.decode().strip()
    assert code == "0", docker("logs", container).stderr.decode()[-2000:]
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
