"""`make k8s-check`, with no cluster: every kustomize overlay renders, and every object it makes
is valid, strictly, against Kubernetes' API (kubernetes-validate) or KServe's vendored CRDs.

The check runs in .venv-k8s (kubectl, kubernetes-validate, jsonschema), which make test builds
and passes as HOUSING_K8S_PYTHON; without it these tests fail, they never skip. Every run works
on scratch copies in a temporary folder and writes there, never into the user's artifacts/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO, make
from pipeline.deploy import kubernetes_check

MANIFESTS = REPO / "deploy" / "kubernetes"
SCHEMAS = MANIFESTS / "schemas" / f"kserve-{kubernetes_check.KSERVE_TAG}"
PROG = kubernetes_check.PROG

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: example/web:1
          ports: [{name: grpc, containerPort: 8081}]
          readinessProbe:
            grpc: {port: 8081}
            periodSeconds: 5
          lifecycle:
            preStop:
              sleep: {seconds: 5}
"""
SERVING_RUNTIME = """\
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata: {name: rt}
spec:
  supportedModelFormats: [{name: onnx, version: "1", autoSelect: false}]
  protocolVersions: [v2]
  multiModel: false
  containers:
    - name: kserve-container
      image: example/rt:1
      ports: [{containerPort: 8080, protocol: TCP}]
      readinessProbe:
        httpGet: {path: /v2/health/ready, port: 8080}
"""
INFERENCE_SERVICE = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: isvc
  annotations: {serving.kserve.io/deploymentMode: RawDeployment}
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      runtime: rt
      storageUri: pvc://models/housing
"""


def k8s_python() -> str:
    """The check's venv (make test sets HOUSING_K8S_PYTHON)."""
    python = os.environ.get("HOUSING_K8S_PYTHON", str(REPO / ".venv-k8s" / "bin" / "python"))
    assert Path(python).exists(), f"{python} is missing: run the tests through make test (it makes that venv)"
    return python


def run_check(manifests: Path, output: Path, schemas: Path | None = SCHEMAS) -> subprocess.CompletedProcess:
    """The check as make k8s-check runs it, from the repository, in .venv-k8s; the vendored CRDs
    unless ``schemas`` is None (then the check's default, below ``manifests``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "runtime" / "src")])}
    command = [k8s_python(), "-m", PROG, "--manifests", str(manifests), "--output", str(output)]
    command += ["--schemas", str(schemas)] if schemas else []
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def write_overlay(root: Path, folder: str, *documents: str) -> Path:
    """An overlay at root/folder whose one resource file holds the documents."""
    overlay = root / folder
    overlay.mkdir(parents=True)
    (overlay / "objects.yaml").write_text("---\n".join(documents))
    (overlay / "kustomization.yaml").write_text("resources:\n  - objects.yaml\n")
    return overlay


def check_documents(tmp_path: Path, *documents: str) -> subprocess.CompletedProcess:
    """One overlay, 'app', holding the documents, checked against the vendored CRDs."""
    write_overlay(tmp_path / "manifests", "app", *documents)
    return run_check(tmp_path / "manifests", tmp_path / "out")


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} if folder.is_dir() else {}


# ---- The real manifests ------------------------------------------------------------------------


def test_the_real_manifests_render_and_pass(tmp_path):
    """A scratch copy of deploy/kubernetes: every overlay renders to NAME.yaml and NAME.json (the
    same objects), and every object was validated by Kubernetes' schema or a vendored CRD."""
    shutil.copytree(MANIFESTS, tmp_path / "kubernetes")
    result = run_check(tmp_path / "kubernetes", tmp_path / "out", schemas=None)
    assert result.returncode == 0, result.stderr
    overlays = kubernetes_check.discover(tmp_path / "kubernetes")
    assert overlays, "no overlay under deploy/kubernetes"
    report = json.loads((tmp_path / "out" / "check.json").read_text())
    assert set(report["overlays"]) == set(overlays)
    assert report["kubernetes_version"] == kubernetes_check.K8S_VERSION
    for name in overlays:
        objects = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert isinstance(objects, list) and objects, name
        kinds = re.findall(r"^kind: (\S+)$", (tmp_path / "out" / f"{name}.yaml").read_text(), re.MULTILINE)
        assert kinds == [obj["kind"] for obj in objects]
        verdicts = {entry["object"]: entry["validated_by"] for entry in report["overlays"][name]["objects"]}
        for obj in objects:
            expected = f"Kubernetes {kubernetes_check.K8S_VERSION}"
            if obj["apiVersion"].startswith("serving.kserve.io/"):
                expected = f"kserve-{kubernetes_check.KSERVE_TAG} CRD"
            assert verdicts[f"{obj['kind']}/{obj['metadata']['name']}"] == expected
        assert f"k8s-check: {name}: " in result.stdout


def test_the_makefile_expects_the_files_the_check_writes(tmp_path):
    """make's targets for the renders are named as the check names them, from the same folders."""
    result = make("-pnq", "help", artifacts=tmp_path)
    rendered = re.search(r"^K8S_RENDERED := (.*)$", result.stdout, re.MULTILINE)
    assert rendered, result.stderr
    names = kubernetes_check.discover(MANIFESTS)
    assert sorted(rendered.group(1).split()) == sorted(
        str(tmp_path / "kubernetes" / f"{name}{suffix}") for name in names for suffix in (".yaml", ".json")
    )


def test_the_k8s_venv_holds_exactly_what_requirements_k8s_pins():
    """Installed with --no-deps, the file must pin every requirement itself: pip check finds none
    missing, and pip freeze lists exactly the pins."""

    def normalized(pins: list[str]) -> set[str]:
        return {re.sub(r"[-_.]+", "-", pin.strip().lower()) for pin in pins if pin.strip()}

    lines = (REPO / "requirements-k8s.txt").read_text().splitlines()
    pins = [line for line in lines if line.strip() and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", pin) for pin in pins), pins
    check = subprocess.run([k8s_python(), "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    freeze = subprocess.run([k8s_python(), "-m", "pip", "freeze"], capture_output=True, text=True, timeout=120)
    assert normalized(freeze.stdout.splitlines()) == normalized(pins)


def test_an_empty_k8s_venv_is_a_one_line_error():
    result = subprocess.run(
        ["make", "--no-print-directory", "K8S_VENV=", "k8s-check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MAKEFLAGS"},
    )
    assert result.returncode != 0
    assert len(error_lines(result)) == 1 and "K8S_VENV" in result.stderr, result.stderr


# ---- Rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kustomization", "kustomize_says"),
    [
        ("resources:\n  - missing.yaml\n", "missing.yaml"),
        ("resources: [\n", "invalid Kustomization"),
        ("resourcez: []\n", 'unknown field "resourcez"'),
    ],
    ids=["missing-resource", "bad-yaml", "unknown-field"],
)
def test_an_overlay_that_does_not_render_is_one_line_and_writes_nothing(tmp_path, kustomization, kustomize_says):
    """A good overlay and a broken one: one line naming the broken folder and kustomize's own
    error, a non-zero exit, and the output of the last good run left exactly as it was."""
    root, out = tmp_path / "manifests", tmp_path / "out"
    (root / "zbroken").mkdir(parents=True)
    (root / "zbroken" / "kustomization.yaml").write_text(kustomization)
    assert run_check(root, out).returncode == 2 and not out.exists()  # a first run creates nothing
    (root / "zbroken" / "kustomization.yaml").rename(root / "zbroken" / "broken.yaml")
    write_overlay(root, "good", DEPLOYMENT)
    assert run_check(root, out).returncode == 0
    before = snapshot(out)
    (root / "zbroken" / "broken.yaml").rename(root / "zbroken" / "kustomization.yaml")
    result = run_check(root, out)
    lines = error_lines(result)
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{PROG}: error: {root / 'zbroken'} does not render: ") and kustomize_says in lines[0]
    assert "Traceback" not in result.stderr
    assert snapshot(out) == before  # nothing rewritten, no temporary file left


def test_overlays_are_found_and_named_by_their_folders(tmp_path):
    """Every folder holding a kustomization, however deep; NAME is its path joined with '-'."""
    root = tmp_path / "manifests"
    write_overlay(root, "base", DEPLOYMENT)
    write_overlay(root, "overlays/staging/eu", DEPLOYMENT)
    result = run_check(root, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "base.json",
        "base.yaml",
        "check.json",
        "overlays-staging-eu.json",
        "overlays-staging-eu.yaml",
    ]
    # An overlay removed since loses its files; nothing else in the folder is touched.
    (tmp_path / "out" / "notes.json").write_text("{}")
    shutil.rmtree(root / "overlays")
    assert run_check(root, tmp_path / "out").returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "base.json",
        "base.yaml",
        "check.json",
        "notes.json",
    ]


@pytest.mark.parametrize(
    ("layout", "says"),
    [({}, "no kustomization.yaml below"), ({"kustomization.yaml": "resources: []\n"}, "holds a kustomization itself")],
    ids=["none", "at-the-root"],
)
def test_a_tree_without_overlays_is_one_line(tmp_path, layout, says):
    root = tmp_path / "manifests"
    root.mkdir()
    for name, text in layout.items():
        (root / name).write_text(text)
    result = run_check(root, tmp_path / "out")
    assert result.returncode == 2 and len(error_lines(result)) == 1 and says in result.stderr, result.stderr


# ---- Kubernetes' own kinds: kubernetes-validate, strict ------------------------------------------


def test_a_valid_deployment_with_grpc_probes_and_a_prestop_sleep_passes(tmp_path):
    result = check_documents(tmp_path, DEPLOYMENT)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("periodSeconds: 5", "periodSecond: 5", "spec.template.spec.containers[0].readinessProbe.periodSecond"),
        ("sleep: {seconds: 5}", "sleep: {seconds: 5, sleeep: 1}", "containers[0].lifecycle.preStop.sleep.sleeep"),
        ("metadata: {name: web}", "metadata: {name: web, label: {}}", "metadata.label"),
        # Known to Kubernetes 1.34 and later only: the pinned version refuses it.
        ("      containers:", "      hostnameOverride: web\n      containers:", "spec.template.spec.hostnameOverride"),
    ],
    ids=["probe", "prestop-sleep", "metadata", "newer-than-pinned"],
)
def test_a_deployment_with_an_unknown_field_fails_naming_it(tmp_path, old, new, path):
    assert old in DEPLOYMENT
    result = check_documents(tmp_path, DEPLOYMENT.replace(old, new))
    lines = error_lines(result)
    assert result.returncode == 2
    rendered = tmp_path / "out" / "app.yaml"
    assert lines[0].startswith(f"{PROG}: {rendered}: Deployment/web: ") and lines[0].endswith(f"{path}: unknown field")
    assert len(lines) == 2 and lines[1].endswith(
        ": error: 1 validation error in the rendered manifests (above); fix the overlays"
    )
    assert not (tmp_path / "out" / "check.json").exists()  # written only when everything passed
    assert rendered.is_file()  # the file the error names


def test_a_deployment_with_a_wrong_type_fails_naming_the_field(tmp_path):
    result = check_documents(tmp_path, DEPLOYMENT.replace("periodSeconds: 5", "periodSeconds: often"))
    assert result.returncode == 2
    assert "Deployment/web: spec.template.spec.containers[0].readinessProbe.periodSeconds: " in result.stderr


@pytest.mark.parametrize(
    "document",
    [
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec: {}\n",
        "apiVersion: autoscaling/v2beta2\nkind: HorizontalPodAutoscaler\nmetadata: {name: hpa}\nspec: {}\n",
        "apiVersion: serving.kserve.io/v1alpha1\nkind: InferenceGraph\nmetadata: {name: graph}\nspec: {}\n",
    ],
    ids=["other-crd", "removed-api", "kserve-kind-not-vendored"],
)
def test_any_other_kind_is_refused_as_unknown(tmp_path, document):
    result = check_documents(tmp_path, document)
    assert result.returncode == 2
    assert re.search(r": kind: \w+ \([\w./]+\) is unknown: ", error_lines(result)[0]), result.stderr


# ---- KServe's kinds: the vendored CRDs, strict -------------------------------------------------


def test_valid_kserve_objects_pass(tmp_path):
    result = check_documents(tmp_path, SERVING_RUNTIME, INFERENCE_SERVICE)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "check.json").read_text())
    assert {entry["validated_by"] for entry in report["overlays"]["app"]["objects"]} == {
        f"kserve-{kubernetes_check.KSERVE_TAG} CRD"
    }


@pytest.mark.parametrize(
    ("old", "new", "line_ends"),
    [
        (
            "  multiModel: false",
            "  multiModel: false\n  containerz: []",
            "ServingRuntime/rt: spec.containerz: unknown field",
        ),
        (
            "image: example/rt:1",
            "image: example/rt:1\n      imagePullPolicies: Always",
            "ServingRuntime/rt: spec.containers[0].imagePullPolicies: unknown field",
        ),
        (
            "metadata: {name: rt}",
            "metadata: {name: rt, annotation: {}}",
            "ServingRuntime/rt: metadata.annotation: unknown field",
        ),
        ("multiModel: false", 'multiModel: "no"', "ServingRuntime/rt: spec.multiModel: 'no' is not of type 'boolean'"),
        (
            "containerPort: 8080",
            "containerPort: http",
            "ServingRuntime/rt: spec.containers[0].ports[0].containerPort: 'http' is not of type 'integer'",
        ),
    ],
    ids=["unknown-spec-field", "unknown-container-field", "unknown-metadata-field", "wrong-type", "port-not-integer"],
)
def test_a_serving_runtime_is_checked_against_the_vendored_crd(tmp_path, old, new, line_ends):
    assert old in SERVING_RUNTIME
    result = check_documents(tmp_path, SERVING_RUNTIME.replace(old, new))
    lines = error_lines(result)
    assert result.returncode == 2
    assert len(lines) == 2 and lines[0].endswith(line_ends), result.stderr
    assert lines[0].startswith(f"{PROG}: {tmp_path / 'out' / 'app.yaml'}: ")


@pytest.mark.parametrize(("port", "ok"), [("8080", True), ("http", True), ("1.5", False), ("true", False)])
def test_int_or_string_is_an_integer_or_a_string(tmp_path, port, ok):
    """x-kubernetes-int-or-string, as Kubernetes reads it: httpGet.port 8080 or "http", nothing else."""
    result = check_documents(tmp_path, SERVING_RUNTIME.replace("port: 8080}", f"port: {port}}}"))
    assert (result.returncode == 0) == ok, result.stderr
    if not ok:
        assert "spec.containers[0].readinessProbe.httpGet.port: " in result.stderr


def test_an_inference_service_is_checked_against_the_vendored_crd(tmp_path):
    broken = INFERENCE_SERVICE.replace("storageUri:", "storageUrl:").replace("runtime: rt", "runtime: 3")
    lines = error_lines(check_documents(tmp_path, broken))
    assert lines[:2] == [
        f"{PROG}: {tmp_path / 'out' / 'app.yaml'}: InferenceService/isvc: spec.predictor.model.runtime: "
        "3 is not of type 'string'",
        f"{PROG}: {tmp_path / 'out' / 'app.yaml'}: InferenceService/isvc: spec.predictor.model.storageUrl: "
        "unknown field",
    ]


def test_a_kserve_version_the_crd_does_not_serve_is_refused(tmp_path):
    result = check_documents(tmp_path, SERVING_RUNTIME.replace("v1alpha1", "v1beta1"))
    assert "apiVersion: serving.kserve.io/v1beta1 is not served; ServingRuntime is served as ['v1alpha1']" in (
        result.stderr
    )


# ---- The vendored CRDs ---------------------------------------------------------------------------


def test_the_vendored_crds_carry_the_licence_and_their_source():
    """KServe's files as released: the licence beside them, the README names the repository, the
    tag the check pins and the commit, and its sha256 block matches every vendored file."""
    readme = (SCHEMAS / "README.md").read_text()
    assert "https://github.com/kserve/kserve" in readme
    assert f"Tag: `{kubernetes_check.KSERVE_TAG}`" in readme and re.search(r"commit `[0-9a-f]{40}`", readme)
    licence = (SCHEMAS / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    sums = {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.MULTILINE)}
    files = {p.name for p in SCHEMAS.iterdir() if p.name != "README.md"}
    assert set(sums) == files
    for name, digest in sums.items():
        assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == digest, f"{name} differs from the release"
    kinds = {
        re.search(r"^    kind: (\w+)$", (SCHEMAS / n).read_text(), re.MULTILINE).group(1) for n in files - {"LICENSE"}
    }
    assert kinds == {"ServingRuntime", "ClusterServingRuntime", "InferenceService"}
