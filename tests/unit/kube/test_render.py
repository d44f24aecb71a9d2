"""`deploy render`: the objects, their schemas for every Kubernetes minor K3s supports, and the pod's config."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from k3sreg.config import load_settings
from k3sreg.k3s.validate import validate_text
from k3sreg.kube.config import HTPASSWD_FILE
from k3sreg.kube.render import Rendered, as_files, as_stream, render
from k3sreg.kube.spec import DeploySpec, is_label, is_subdomain

K8S_MINORS = ("1.32", "1.33", "1.34")
"""Kubernetes minors K3s ships today (its support window); kubernetes-validate carries their schemas."""

HTPASSWD = "ci:$2y$05$abcdefghijklmnopqrstuu5Zbq1M5cNm6yB3g8Y6m2B6hH2kS0Hn2\n"
FULL_CONFIG: dict[str, Any] = {
    "version": 0.1,
    "storage": {"filesystem": {"rootdirectory": "/srv/registry"}},
    "http": {"addr": ":5001", "secret": "s3cr3t-http"},
    "upstreams": [
        {"name": "docker.io", "url": "https://registry-1.docker.io", "username": "me", "password": "hub-pass"},
        {"name": "ghcr.io", "url": "https://ghcr.io"},
        {"name": "quay.io", "url": "https://quay.io", "username": "q", "password": "quay-pass"},
    ],
}


def _full() -> Rendered:
    spec = DeploySpec(namespace="reg-1", node_port=31000, host="registry.example.lan", storage_size="50Gi",
                      tls_secret="registry-tls", htpasswd=HTPASSWD, image="registry.example.lan:5000/k3sreg:1.0")
    return render(spec, FULL_CONFIG, ["docker.io", "ghcr.io", "quay.io"])


CASES = {"default": lambda: render(DeploySpec(), None), "full": _full}


def _by_kind(rendered: Rendered) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in rendered.objects:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def check_helm_chart_config(doc: dict[str, Any]) -> None:
    """HelmChartConfig (helm.cattle.io/v1, a CRD): the fields helm-controller knows, and Traefik's value keys."""
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert (doc["apiVersion"], doc["kind"]) == ("helm.cattle.io/v1", "HelmChartConfig")
    assert (doc["metadata"]["name"], doc["metadata"]["namespace"]) == ("traefik", "kube-system")
    assert set(doc["spec"]) <= {"valuesContent", "failurePolicy"}
    values = yaml.safe_load(doc["spec"]["valuesContent"])
    assert set(values) == {"ports"}
    assert set(values["ports"]) == {"web", "websecure"}
    for port in values["ports"].values():
        assert port == {"transport": {"respondingTimeouts": {"readTimeout": "0s"}}}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("minor", K8S_MINORS)
def test_every_object_passes_the_kubernetes_schema(case: str, minor: str) -> None:
    """Each rendered object validates (strict: no unknown field) against the OpenAPI schema of the minor."""
    rendered = CASES[case]()
    for doc in rendered.objects:
        if doc["kind"] == "HelmChartConfig":
            check_helm_chart_config(doc)
            continue
        # Through YAML and back, as kubectl reads it: the schema sees what the file says.
        parsed = yaml.safe_load(yaml.safe_dump(doc))
        assert kubernetes_validate.validate(parsed, minor, strict=True) == minor


def test_schema_check_catches_a_wrong_field() -> None:
    """The validation is real: a misspelled Deployment field fails the strict schema."""
    deployment = _by_kind(render(DeploySpec(), None))["Deployment"][0]
    deployment["spec"]["strategy"] = {"typ": "Recreate"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_MINORS[0], strict=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_names_and_labels(case: str) -> None:
    """Names are DNS-1123 (namespace: a label) and every object has the app.kubernetes.io labels."""
    for doc in CASES[case]().objects:
        meta = doc["metadata"]
        assert is_subdomain(meta["name"])
        assert is_label(meta.get("namespace", meta["name"]))
        keys = set(meta["labels"])
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"} <= keys
        assert all(k.startswith(("app.kubernetes.io/", "pod-security.kubernetes.io/")) for k in keys)


def test_default_objects_in_apply_order() -> None:
    """Namespace first, then the PVC, ConfigMap, Deployment, NodePort Service, Ingress and Traefik's config."""
    kinds = [d["kind"] for d in render(DeploySpec(), None).objects]
    assert kinds == ["Namespace", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service", "Ingress",
                     "HelmChartConfig"]
    assert "HelmChartConfig" not in [d["kind"] for d in render(DeploySpec(traefik_config=False), None).objects]


def _pod_settings(rendered: Rendered, tmp_path: Path) -> Any:
    config_map = _by_kind(rendered)["ConfigMap"][0]
    path = tmp_path / "config.yml"
    path.write_text(config_map["data"]["config.yml"])
    return load_settings(path, env=rendered.pod.env())


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_map_loads_and_matches_the_deployment(case: str, tmp_path: Path) -> None:
    """config.yml loads with the pod's environment; its storage is the PVC mount, its port the containerPort."""
    rendered = CASES[case]()
    settings = _pod_settings(rendered, tmp_path)
    pod = _by_kind(rendered)["Deployment"][0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert settings.storage.filesystem is not None
    assert str(settings.storage.filesystem.rootdirectory) == mounts["data"]
    claim = next(v for v in pod["volumes"] if v["name"] == "data")["persistentVolumeClaim"]["claimName"]
    assert claim == _by_kind(rendered)["PersistentVolumeClaim"][0]["metadata"]["name"]
    assert settings.http.bind()[1] == container["ports"][0]["containerPort"]
    assert settings.health.storagedriver.enabled
    assert container["readinessProbe"]["httpGet"]["path"] == "/debug/health"
    assert container["args"] == ["serve", "/etc/k3sreg/config.yml"] and mounts["config"] == "/etc/k3sreg"


def test_credentials_move_into_a_secret(tmp_path: Path) -> None:
    """Passwords leave config.yml for a Secret, come back as REGISTRY_* variables; htpasswd is mounted."""
    rendered = _full()
    text = _by_kind(rendered)["ConfigMap"][0]["data"]["config.yml"]
    for value in ("hub-pass", "quay-pass", "s3cr3t-http"):
        assert value not in text
    secrets = {s["metadata"]["name"]: s for s in _by_kind(rendered)["Secret"]}
    creds = {k: base64.b64decode(v).decode() for k, v in secrets["k3sreg-credentials"]["data"].items()}
    assert creds == {"http-secret": "s3cr3t-http", "upstreams-0-password": "hub-pass",
                     "upstreams-2-password": "quay-pass"}
    container = _by_kind(rendered)["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["REGISTRY_UPSTREAMS_2_PASSWORD"] == {"name": "k3sreg-credentials", "key": "upstreams-2-password"}
    settings = _pod_settings(rendered, tmp_path)
    assert [u.password for u in settings.upstreams] == ["hub-pass", "", "quay-pass"]
    assert settings.http.secret == "s3cr3t-http"
    assert base64.b64decode(secrets["k3sreg-htpasswd"]["data"]["htpasswd"]).decode() == HTPASSWD
    assert settings.auth is not None and settings.auth.htpasswd is not None
    assert settings.auth.htpasswd.path == HTPASSWD_FILE
    assert "registry.example.lan" in settings.names  # ns=<ingress host> is served locally


def test_deployment_runs_locked_down() -> None:
    """Recreate, non-root 65532, read-only root, no capabilities, RuntimeDefault seccomp, IfNotPresent, limits."""
    spec = _by_kind(render(DeploySpec(), None))["Deployment"][0]["spec"]
    assert spec["strategy"] == {"type": "Recreate"} and spec["replicas"] == 1
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["runAsUser"] == 65532 and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["imagePullPolicy"] == "IfNotPresent" and container["image"] == "localhost/k3sreg:0.1.0"
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    assert {"readinessProbe", "livenessProbe"} <= set(container)


def test_config_checksum_rolls_the_pod_on_a_config_change() -> None:
    """The pod template's checksum annotation follows config.yml."""
    def checksum(rendered: Rendered) -> str:
        return _by_kind(rendered)["Deployment"][0]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = render(DeploySpec(), None)
    assert checksum(base) == checksum(render(DeploySpec(), None))
    changed = render(DeploySpec(), {"version": "0.1", "storage": {"filesystem": {}}, "http": {"addr": ":5000"}})
    assert checksum(changed) != checksum(base)
    assert re.match(r"^sha256:[0-9a-f]{64}$", checksum(base))


def test_service_ingress_and_traefik() -> None:
    """NodePort as asked; Ingress on traefik with TLS from the secret; Traefik's read timeout lifted."""
    kinds = _by_kind(_full())
    port = kinds["Service"][0]["spec"]["ports"][0]
    assert port["nodePort"] == 31000 and kinds["Service"][0]["spec"]["type"] == "NodePort"
    ing = kinds["Ingress"][0]["spec"]
    assert ing["ingressClassName"] == "traefik"
    assert ing["tls"] == [{"hosts": ["registry.example.lan"], "secretName": "registry-tls"}]
    check_helm_chart_config(kinds["HelmChartConfig"][0])


def test_registries_yaml_mirrors_to_the_node_port() -> None:
    """The nodes' registries.yaml mirrors docker.io, each upstream and the Ingress host to the NodePort."""
    rendered = _full()
    assert not [f for f in validate_text(rendered.registries) if f.severity == "error"]
    doc = yaml.safe_load(rendered.registries)
    assert list(doc["mirrors"]) == ["docker.io", "ghcr.io", "quay.io", "registry.example.lan"]
    assert {m["endpoint"][0] for m in doc["mirrors"].values()} == {"http://127.0.0.1:31000"}
    creds = render(DeploySpec(node_username="node", node_password="pw"), None).registries
    assert yaml.safe_load(creds)["configs"]["127.0.0.1:30500"]["auth"] == {"username": "node", "password": "pw"}


def test_stream_and_files() -> None:
    """One YAML stream in apply order; or one file per object, named in apply order, plus kustomization.yaml."""
    rendered = _full()
    docs = [d for d in yaml.safe_load_all(as_stream(rendered)) if d]
    assert docs == rendered.objects
    files = as_files(rendered)
    names = [n for n in files if n != "kustomization.yaml"]
    assert names == sorted(names) and names[0].startswith("01-namespace-")
    assert yaml.safe_load(files["kustomization.yaml"])["resources"] == names
    assert [yaml.safe_load(files[n]) for n in names] == rendered.objects
