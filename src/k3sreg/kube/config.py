"""The config.yml that runs in the pod: the user's (or the default one), adapted to the Deployment around it.

    config.yml ──► storage path (the PVC's mount), port (containerPort), health.storagedriver on (readiness)
               ──► auth.htpasswd.path → the htpasswd Secret's mount; the Ingress host added to `names`
               ──► secret values (upstream and proxy passwords, S3 keys, http.secret) moved out of the text into
                   a Secret, and put back by REGISTRY_<PATH> variables (config.yml's environment overrides)

Pure: takes and returns plain data; the caller loads and validates the file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml

from k3sreg.errors import UsageError

MOUNT_CONFIG = "/etc/k3sreg"
CONFIG_FILE = f"{MOUNT_CONFIG}/config.yml"
MOUNT_AUTH = "/etc/k3sreg-auth"
HTPASSWD_FILE = f"{MOUNT_AUTH}/htpasswd"
STORAGE = "/var/lib/registry"
DEFAULT_REALM = "k3sreg"

SECRET_PATHS: tuple[tuple[str, ...], ...] = (
    ("http", "secret"),
    ("proxy", "password"),
    ("storage", "s3", "accesskey"),
    ("storage", "s3", "secretkey"),
    ("storage", "s3", "sessiontoken"),
    ("redis", "password"),
)
"""Keys whose values are secrets (besides `upstreams[i].password`)."""


def container_config() -> dict[str, Any]:
    """The config of k3sreg in a container: filesystem storage at /var/lib/registry, :5000, storage health on."""
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {
            "filesystem": {"rootdirectory": STORAGE},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": True, "age": "168h", "interval": "24h"}},
        },
        "http": {"addr": ":5000"},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }


UPSTREAMS_EXAMPLE = """\
# Pull-through cache (leave out in an air-gapped cluster: push images in instead). Credentials put here are
# moved into a Secret by `k3sreg deploy render`.
# upstreams:
#   - name: docker.io
#     url: https://registry-1.docker.io
#     ttl: 168h
#   - name: ghcr.io
#     url: https://ghcr.io
#   - name: quay.io
#     url: https://quay.io
"""


@dataclass(frozen=True)
class SecretValue:
    """One secret taken out of config.yml: the variable that puts it back, its key in the Secret, its value."""

    env: str
    key: str
    value: str


@dataclass(frozen=True)
class PodConfig:
    """config.yml as the pod sees it, and what the Deployment must provide for it."""

    text: str
    port: int
    storage_path: str | None
    secrets: list[SecretValue] = field(default_factory=list)
    htpasswd: bool = False

    def env(self) -> dict[str, str]:
        """The REGISTRY_* variables the pod gets from the Secret (for checking the config as the pod loads it)."""
        return {s.env: s.value for s in self.secrets}


def _port(http: dict[str, Any]) -> int:
    if http.get("net", "tcp") != "tcp":
        raise UsageError("config.yml http.net: in a pod k3sreg must listen on TCP; remove http.net")
    addr = str(http.get("addr", ":5000"))
    host, _, port = addr.rpartition(":")
    if host.strip("[]") not in ("", "0.0.0.0", "::"):
        raise UsageError(f"config.yml http.addr {addr!r} listens only on {host} inside the pod; the Service cannot "
                         f"reach it: write http.addr: ':{port or 5000}'")
    if not port.isdigit():
        raise UsageError(f"config.yml http.addr {addr!r}: expected ':5000'")
    return int(port)


def _take(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict) and node.get(path[-1]) not in (None, ""):
        return node.pop(path[-1])
    return None


def _secrets(doc: dict[str, Any]) -> list[SecretValue]:
    out = []
    for path in SECRET_PATHS:
        value = _take(doc, path)
        if value is not None:
            out.append(SecretValue("REGISTRY_" + "_".join(p.upper() for p in path), "-".join(path), str(value)))
    for i, upstream in enumerate(doc.get("upstreams") or []):
        if isinstance(upstream, dict) and upstream.get("password") not in (None, ""):
            out.append(SecretValue(f"REGISTRY_UPSTREAMS_{i}_PASSWORD", f"upstreams-{i}-password",
                                   str(upstream.pop("password"))))
    return out


def _auth(doc: dict[str, Any], htpasswd: bool) -> None:
    auth = doc.get("auth")
    if isinstance(auth, dict) and auth.get("htpasswd") is not None and not htpasswd:
        path = (auth["htpasswd"] or {}).get("path", "")
        raise UsageError(f"config.yml auth.htpasswd.path {path!r} is a file on this machine, not in the pod: "
                         "give it with --htpasswd FILE (it goes into a Secret)")
    if isinstance(auth, dict) and set(auth) - {"htpasswd"} and htpasswd:
        raise UsageError("--htpasswd and config.yml's auth (token or silly) exclude each other; keep one")
    if htpasswd:
        old = (auth or {}).get("htpasswd") or {} if isinstance(auth, dict) else {}
        doc["auth"] = {"htpasswd": {"realm": old.get("realm") or DEFAULT_REALM, "path": HTPASSWD_FILE}}


def pod_config(raw: dict[str, Any] | None, host: str, htpasswd: bool = False) -> PodConfig:
    """Adapt `raw` (None: container_config()) to the pod; UsageError for what cannot work in one."""
    doc = copy.deepcopy(raw) if raw is not None else container_config()
    http = doc.setdefault("http", {}) or {}
    doc["http"] = http
    if http.get("tls"):
        raise UsageError("config.yml http.tls: in the cluster TLS ends at the Ingress (--tls-secret NAME) and "
                         "the nodes use the NodePort; remove http.tls")
    port = _port(http)
    storage = doc.get("storage") or {}
    storage_path = None
    if isinstance(storage, dict) and "filesystem" in storage:
        fs = storage.get("filesystem") or {}
        storage_path = str(fs.get("rootdirectory") or STORAGE)
        if not storage_path.startswith("/"):
            raise UsageError(f"config.yml storage.filesystem.rootdirectory {storage_path!r}: the volume is mounted "
                             f"at an absolute path in the pod; write e.g. {STORAGE}")
    health = doc.setdefault("health", {}) or {}
    doc["health"] = health
    driver_check = health.setdefault("storagedriver", {}) or {}
    health["storagedriver"] = driver_check
    driver_check.setdefault("enabled", True)
    _auth(doc, htpasswd)
    if doc.get("upstreams") or doc.get("proxy"):
        names = doc.get("names") or []
        names = [names] if isinstance(names, str) else list(names)
        if host not in names:
            names.append(host)  # pulls of <host>/... arrive with ns=<host>: served locally
        doc["names"] = names
    secrets = _secrets(doc)
    text = "# config.yml of k3sreg, rendered by `k3sreg deploy render`\n"
    text += yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if raw is None:
        text += UPSTREAMS_EXAMPLE
    return PodConfig(text=text, port=port, storage_path=storage_path, secrets=secrets, htpasswd=htpasswd)
