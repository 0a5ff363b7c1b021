"""The Kubernetes manifests, run: the image under Docker with exactly the settings the rendered
Deployment and KServe ServingRuntime give it (``pod_as_docker``), probed as the kubelet probes
it, sent one inference, and stopped as the kubelet stops it. A change to the server's ports,
probes, user or shutdown that the manifests do not follow fails here.

`make docker` runs these (after `make k8s-check` has rendered the manifests into
$(ARTIFACTS)/kubernetes, HOUSING_RENDERED_MANIFESTS); no cluster can run on the build machine.
The pod's ports are the host's (host network): 8080 and 8081 must be free.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from helpers import REPO, require_image
from housing_runtime import config
from housing_runtime.serving.options import MAX_BODY_BYTES, MAX_ROWS
from housing_runtime.serving.server import SHUTDOWN_SECONDS
from pipeline.config import ARTIFACT_NAMES
from pod_as_docker import (
    declared_ports,
    docker_run_args,
    environment,
    expanded_args,
    probe_passes,
    read_rendered,
    wait_for_probe,
)

pytestmark = pytest.mark.container
IMAGE = os.environ.get("IMAGE", "housing-runtime:latest")
RENDERED = Path(os.environ.get("HOUSING_RENDERED_MANIFESTS", REPO / "artifacts" / ARTIFACT_NAMES["kubernetes_renders"]))
# A sample row of the eight features, in the model's order.
ROW = [8.3252, 41.0, 6.98, 1.02, 322.0, 2.55, 37.88, -122.23]


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def image():
    require_image(IMAGE)


def only(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def image_config() -> dict:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", IMAGE).stdout)


def require_free(ports: set[int]) -> None:
    for port in sorted(ports):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is in use on this host; the pod's own ports are run here: free it")


def running(name: str) -> bool:
    return docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"


def ready_line(name: str) -> dict:
    """The server's "ready" JSON line from the container's stderr."""
    for line in docker("logs", name).stderr.splitlines():
        if line.startswith("{") and json.loads(line).get("message") == "ready":
            return json.loads(line)
    raise AssertionError("no ready line in the container's log")


def infer(port: int, model: str) -> tuple[int, dict]:
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [ROW]}]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def listened_ports(args: list[str]) -> set[int]:
    """The ports `serve`'s args listen on (a runtime may serve a port it does not declare)."""
    return {int(a.split("=", 1)[1]) for a in args if a.startswith(("--port=", "--grpc-port=")) and a[-1] != "="} - {0}


def http_port(container: dict) -> int:
    return next(p["containerPort"] for p in container["ports"] if p.get("name", "http") == "http")


def start(pod: dict, container: dict, volumes: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> str:
    """The container, detached, as the pod runs it; its name."""
    args = expanded_args(container, environment(container))
    require_free(declared_ports(container) | listened_ports(args))
    name = f"housing-pod-{uuid.uuid4().hex[:12]}"
    options = docker_run_args(pod, container, volumes)
    started = docker("run", "-d", "--name", name, *options, *extra, IMAGE, *args)
    assert started.returncode == 0, started.stderr
    return name


def test_the_image_has_the_manifests_user_and_ports():
    """The image's USER is the runAsUser the manifests declare, and it exposes the ports the
    Deployment names: a change to either side alone fails."""
    deployment = only(read_rendered(RENDERED, "base"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    user = {**pod["securityContext"], **container["securityContext"]}
    assert image_config()["User"] == f"{user['runAsUser']}:{user['runAsGroup']}"
    exposed = {int(port.split("/")[0]) for port in image_config()["ExposedPorts"]}
    assert exposed == declared_ports(container)
    assert container["image"].rsplit(":", 1)[0] == IMAGE.rsplit(":", 1)[0]


def test_the_deployment_runs_probes_serves_and_stops_within_its_grace_period():
    """The rendered Deployment's container, run with its own user, read-only root, /tmp
    emptyDir, dropped capabilities, limits, env, args and ports: the startup, readiness and
    liveness probes pass, one inference is answered, --workers is the CPU limit, and after the
    preStop sleep (still ready throughout) SIGTERM ends it with exit 0 within the grace period."""
    deployment = only(read_rendered(RENDERED, "base"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    name = start(pod, container)
    try:
        wait_for_probe(container["startupProbe"], lambda: running(name))
        assert probe_passes(container["readinessProbe"])
        assert probe_passes(container["livenessProbe"])
        status, answer = infer(http_port(container), "uint8")
        assert status == 200, answer
        assert len(answer["outputs"][0]["data"]) == 1
        ready = ready_line(name)
        assert ready["workers"] == int(environment(container)["CPU_LIMIT"])
        assert ready["models"] == list(config.MODEL_VARIANTS)

        # The kubelet's stop: preStop first (the pod still serves), then SIGTERM and the rest
        # of the grace period, then SIGKILL.
        grace = pod["terminationGracePeriodSeconds"]
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        time.sleep(pre_stop)
        assert probe_passes(container["livenessProbe"]) and probe_passes(container["readinessProbe"])
        began = time.monotonic()
        stopped = docker("stop", "--time", str(grace - pre_stop), name, timeout=grace + 30)
        took = time.monotonic() - began
        assert stopped.returncode == 0, stopped.stderr
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
        assert state["ExitCode"] == 0, docker("logs", name).stderr[-2000:]
        # Within the server's own drain (not just the kubelet's kill): the promise the grace
        # period is sized on.
        assert took < SHUTDOWN_SECONDS + 2, f"the server took {took:.1f} s to stop"
        assert SHUTDOWN_SECONDS + pre_stop < grace
    finally:
        docker("rm", "-f", name)


def largest_json_request(max_rows: int, max_bytes: int) -> bytes:
    """The V2 JSON request that costs the server the most memory within its limits: as many rows
    as --max-rows allows, each as short as a plausible row gets (memory grows with the values
    parsed, not with their text), as long as the body stays within --max-body-bytes."""
    row = [8.3, 41.0, 7.0, 1.0, 322.0, 2.6, 37.9, -122.2]
    rows = min(max_rows, (max_bytes - 200) // (len(json.dumps(row)) + 2))
    body = json.dumps({"inputs": [{"name": "input", "shape": [rows, 8], "datatype": "FP32", "data": [row] * rows}]})
    assert len(body) <= max_bytes
    return body.encode()


def test_the_deployments_memory_limit_holds_a_full_size_request_on_every_worker():
    """--workers large requests are parsed and predicted at once: with each the costliest the
    server accepts (its default --max-rows and --max-body-bytes, which the Deployment keeps),
    all are answered 200 within the pod's memory limit, and the container is not OOM-killed."""
    deployment = only(read_rendered(RENDERED, "base"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not any(arg.startswith(("--max-body-bytes", "--max-rows")) for arg in container["args"])
    workers = int(environment(container)["CPU_LIMIT"])
    body = largest_json_request(MAX_ROWS, MAX_BODY_BYTES)
    name = start(pod, container)
    statuses: list[int] = []

    def send() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", http_port(container), timeout=120)
        try:
            conn.request("POST", "/v2/models/uint8/infer", body, {"Content-Type": "application/json"})
            statuses.append(conn.getresponse().status)
        except OSError:
            statuses.append(0)
        finally:
            conn.close()

    try:
        wait_for_probe(container["startupProbe"], lambda: running(name))
        senders = [threading.Thread(target=send) for _ in range(workers)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=150)
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
        assert not state["OOMKilled"] and state["Running"], state
        assert statuses == [200] * workers
    finally:
        docker("rm", "-f", name)


def serving_runtime() -> tuple[dict, dict]:
    runtime = only(read_rendered(RENDERED, "overlays-kserve"), "ServingRuntime")
    (container,) = runtime["spec"]["containers"]
    return {"volumes": runtime["spec"].get("volumes", [])}, container


def model_folder(tmp_path: Path, variants: tuple[str, ...], manifest: bool = True) -> Path:
    """What KServe's storage initializer puts at /mnt/models: the image's own models (those
    named) and, unless told otherwise, the manifest; readable by the image's user."""
    folder = tmp_path / "models"
    folder.mkdir()
    names = [config.ONNX_NAMES[v] for v in variants] + ([config.MANIFEST_NAME] if manifest else [])
    for file_name in names:
        copied = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--entrypoint", "cat", IMAGE, f"/app/artifacts/{file_name}"],
            capture_output=True,
            timeout=60,
        )
        assert copied.returncode == 0, copied.stderr
        (folder / file_name).write_bytes(copied.stdout)
        (folder / file_name).chmod(0o644)
    folder.chmod(0o755)
    return folder


@pytest.mark.parametrize("variants", [config.MODEL_VARIANTS, ("uint8",)], ids=["three-models", "one-model"])
def test_the_serving_runtime_serves_the_folder_at_mnt_models(tmp_path, variants):
    """The KServe ServingRuntime's container with a model folder at /mnt/models, as the storage
    initializer leaves it (read-only): ready, it serves every model the folder holds and says
    which; a model the folder lacks is a 404."""
    pod, container = serving_runtime()
    folder = model_folder(tmp_path, variants)
    name = start(pod, container, extra=("--volume", f"{folder}:/mnt/models:ro"))
    try:
        wait_for_probe(container["readinessProbe"], lambda: running(name), seconds=60)
        assert probe_passes(container["livenessProbe"])
        port = http_port(container)
        assert infer(port, "uint8")[0] == 200
        assert ready_line(name)["models"] == list(variants)
        for missing in set(config.MODEL_VARIANTS) - set(variants):
            assert infer(port, missing)[0] == 404
    finally:
        docker("rm", "-f", name)


def test_the_serving_runtimes_workers_follow_its_cgroup_cpu_limit(tmp_path):
    """The ServingRuntime passes no --workers (Knative refuses the downward API by default): the
    server reads its cgroup's CPU quota. With a 1-CPU limit on this machine of more CPUs, the
    "ready" line says 1 worker, not the machine's count."""
    pod, container = serving_runtime()
    container = {**container, "resources": {**container["resources"], "limits": {"cpu": "1", "memory": "1Gi"}}}
    assert not any(arg.startswith("--workers") for arg in container["args"])
    folder = model_folder(tmp_path, ("uint8",))
    name = start(pod, container, extra=("--volume", f"{folder}:/mnt/models:ro"))
    try:
        wait_for_probe(container["readinessProbe"], lambda: running(name), seconds=60)
        assert ready_line(name)["workers"] == 1
    finally:
        docker("rm", "-f", name)


def test_the_serving_runtime_refuses_a_folder_without_a_manifest(tmp_path):
    """A storageUri holding the models but not manifest.json: the server stops with exit 2 and
    one line naming the missing file, and is never ready."""
    pod, container = serving_runtime()
    folder = model_folder(tmp_path, config.MODEL_VARIANTS, manifest=False)
    name = start(pod, container, extra=("--volume", f"{folder}:/mnt/models:ro"))
    try:
        exited = docker("wait", name, timeout=60)
        assert exited.stdout.strip() == "2"
        lines = docker("logs", name).stderr.strip().splitlines()
        assert lines == [
            "housing-runtime: error: manifest '/mnt/models/manifest.json' not found: the models' folder must hold "
            "the 'manifest.json' that `make all` writes beside them, or pass --no-verify-manifest to skip the check"
        ]
        assert not probe_passes(container["readinessProbe"])
    finally:
        docker("rm", "-f", name)


def test_pod_translation_refuses_a_setting_it_does_not_know():
    """The translation cannot silently drop a setting the manifests gain: it refuses it."""
    deployment = only(read_rendered(RENDERED, "base"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = {**pod["containers"][0], "workingDir": "/srv"}
    with pytest.raises(AssertionError, match="workingDir"):
        docker_run_args(pod, container)
