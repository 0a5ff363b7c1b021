"""A pod's container, as the rendered manifests declare it, turned into `docker run` arguments,
and its probes asked the way the kubelet asks them. What the container tests use to run the
image with exactly the settings the Deployment and the ServingRuntime give it.

Translated: the user and group (runAsUser, runAsGroup), readOnlyRootFilesystem (--read-only),
each emptyDir mount (a tmpfs of its sizeLimit), capabilities (--cap-drop, --cap-add),
allowPrivilegeEscalation: false (no-new-privileges), the CPU and memory limits, env (with the
downward API's limits.cpu, rounded up as the kubelet rounds it), args with $(VAR) expanded as
the kubelet expands them, and the ports, which the host network gives as declared. Anything
the translation does not know is refused, so a new setting cannot be silently left out.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

KNOWN_CONTAINER_KEYS = {
    "name", "image", "imagePullPolicy", "args", "env", "ports", "startupProbe", "readinessProbe",
    "livenessProbe", "lifecycle", "resources", "securityContext", "volumeMounts",
}  # fmt: skip
KNOWN_SECURITY_KEYS = {
    "allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsNonRoot", "runAsUser", "runAsGroup",
    "capabilities", "seccompProfile",
}  # fmt: skip


def quantity_cpus(text: str) -> float:
    """A CPU quantity ("2", "500m") in CPUs."""
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def quantity_bytes(text: str) -> int:
    """A memory quantity ("1Gi", "256Mi", "512M") in bytes."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def environment(container: dict) -> dict[str, str]:
    """The container's env as the kubelet resolves it: values, and the downward API's
    resourceFieldRef limits.cpu (ceil(limit / divisor), at least 1)."""
    limits = container.get("resources", {}).get("limits", {})
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["resourceFieldRef"]
        assert ref["resource"] == "limits.cpu" and ref.get("containerName") == container["name"], ref
        divisor = quantity_cpus(ref.get("divisor", "1"))
        env[var["name"]] = str(max(math.ceil(quantity_cpus(limits["cpu"]) / divisor), 1))
    return env


def expanded_args(container: dict, env: dict[str, str]) -> list[str]:
    """args with $(VAR) replaced from env, and $$ as $: the kubelet's expansion."""

    def one(match: re.Match) -> str:
        return "$" if match.group(0) == "$$" else env.get(match.group(1), match.group(0))

    return [re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, arg) for arg in container.get("args", [])]


def security(pod_spec: dict, container: dict) -> dict:
    """The container's security settings over the pod's (a container's own win)."""
    merged = dict(pod_spec.get("securityContext", {}))
    merged.update(container.get("securityContext", {}))
    return merged


def docker_run_args(pod_spec: dict, container: dict, volumes: dict[str, str] | None = None) -> list[str]:
    """`docker run` options for the container (host network: its ports as declared). ``volumes``
    maps a volume name that is not an emptyDir to a host folder (mounted read-only)."""
    unknown = set(container) - KNOWN_CONTAINER_KEYS
    assert not unknown, f"the container sets {sorted(unknown)}, which this test does not translate"
    sec = security(pod_spec, container)
    assert not set(sec) - KNOWN_SECURITY_KEYS, f"securityContext keys not translated: {set(sec) - KNOWN_SECURITY_KEYS}"
    args = ["--network", "host", "--user", f"{sec['runAsUser']}:{sec.get('runAsGroup', sec['runAsUser'])}"]
    if sec.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sec.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    caps = sec.get("capabilities", {})
    args += [f"--cap-drop={cap}" for cap in caps.get("drop", [])]
    args += [f"--cap-add={cap}" for cap in caps.get("add", [])]
    assert sec.get("seccompProfile", {}).get("type", "RuntimeDefault") == "RuntimeDefault"  # docker's default
    limits = container.get("resources", {}).get("limits", {})
    if "cpu" in limits:
        args += ["--cpus", str(quantity_cpus(limits["cpu"]))]
    if "memory" in limits:
        args += ["--memory", str(quantity_bytes(limits["memory"]))]
    declared = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = declared[mount["name"]]
        if "emptyDir" in volume:  # world-writable with the sticky bit, as the kubelet makes it
            size = quantity_bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))
            args += ["--tmpfs", f"{mount['mountPath']}:rw,size={size},mode=1777"]
        else:
            args += ["--volume", f"{(volumes or {})[mount['name']]}:{mount['mountPath']}:ro"]
    for name, value in environment(container).items():
        args += ["--env", f"{name}={value}"]
    return args


def declared_ports(container: dict) -> set[int]:
    return {port["containerPort"] for port in container.get("ports", [])}


def probe_passes(probe: dict, timeout: float = 2.0) -> bool:
    """One probe, as the kubelet runs it: httpGet is a 2xx or 3xx; grpc is SERVING."""
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            conn = http.client.HTTPConnection("127.0.0.1", int(get["port"]), timeout=timeout)
            try:
                conn.request("GET", get["path"])
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        check = probe["grpc"]
        with grpc.insecure_channel(f"127.0.0.1:{check['port']}") as channel:
            request = health_pb2.HealthCheckRequest(service=check.get("service", ""))
            status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout).status
            return status == health_pb2.HealthCheckResponse.SERVING
    except (OSError, grpc.RpcError):
        return False


def wait_for_probe(probe: dict, still_running, seconds: float | None = None) -> float:
    """Ask the probe every periodSeconds until it passes; the seconds it took. Fails after its
    failureThreshold (or ``seconds``), or once the container has stopped."""
    period = probe.get("periodSeconds", 10)
    budget = seconds if seconds is not None else period * probe.get("failureThreshold", 3)
    start = time.monotonic()
    while True:
        if probe_passes(probe):
            return time.monotonic() - start
        assert still_running(), "the container stopped before its probe passed"
        assert time.monotonic() - start < budget, f"probe {probe} did not pass within {budget} s"
        time.sleep(min(period, 0.2))  # faster than the kubelet, never slower: a bound, not a wait


def read_rendered(folder: Path, name: str) -> list[dict]:
    path = folder / f"{name}.json"
    assert path.is_file(), f"{path} is missing: run `make k8s-check` (make docker does)"
    return json.loads(path.read_text())
