"""The Kubernetes objects of a k3sreg deployment, as plain dicts (apiVersion, kind, metadata, spec).

Every object carries the app.kubernetes.io/* labels; the Deployment selects on name and instance only (a
selector is immutable, so it must not contain the version).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import yaml

from k3sreg import __version__
from k3sreg.kube.config import MOUNT_AUTH, MOUNT_CONFIG, PodConfig
from k3sreg.kube.spec import APP, RUN_AS, DeploySpec

CONFIG_MAP = f"{APP}-config"
DATA_CLAIM = f"{APP}-data"
HTPASSWD_SECRET = f"{APP}-htpasswd"
CREDENTIALS_SECRET = f"{APP}-credentials"
TRAEFIK_READ_TIMEOUT = "0s"
"""Traefik v3 ends a request whose body takes longer than 60 s to arrive; 0s: no limit (a layer push may take
minutes). Idle connections are still closed after Traefik's idleTimeout."""

# Figures from docs/benchmarks.md: peak RSS ~59 MiB per worker process (flat with blob size); the request
# leaves room for one worker and the page cache it leans on, the limit for bursts and a second worker.
RESOURCES = {"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}


def labels(component: str = "registry") -> dict[str, str]:
    """The recommended app.kubernetes.io labels of every object."""
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": APP,
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": APP,
        "app.kubernetes.io/managed-by": "k3sreg-deploy-render",
    }


def selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": APP}


def _meta(name: str, namespace: str | None, component: str = "registry") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels(component)
    return meta


def namespace(spec: DeploySpec) -> dict[str, Any]:
    """The namespace, held to the `restricted` Pod Security Standard (the pod meets it)."""
    meta = _meta(spec.namespace, None)
    meta["labels"] |= {"pod-security.kubernetes.io/enforce": "restricted",
                       "pod-security.kubernetes.io/enforce-version": "latest"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def claim(spec: DeploySpec) -> dict[str, Any]:
    """The storage: one ReadWriteOnce volume (local-path: a directory on the node the pod first lands on)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(DATA_CLAIM, spec.namespace, "storage"),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": spec.storage_class,
            "resources": {"requests": {"storage": spec.storage_size}},
        },
    }


def config_map(spec: DeploySpec, pod: PodConfig) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(CONFIG_MAP, spec.namespace),
            "data": {"config.yml": pod.text}}


def _secret(name: str, spec: DeploySpec, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, spec.namespace), "type": "Opaque",
            "data": encoded}


def secrets(spec: DeploySpec, pod: PodConfig) -> list[dict[str, Any]]:
    """The htpasswd file and the credentials taken out of config.yml (none when there are none)."""
    out = []
    if spec.htpasswd is not None:
        out.append(_secret(HTPASSWD_SECRET, spec, {"htpasswd": spec.htpasswd}))
    if pod.secrets:
        out.append(_secret(CREDENTIALS_SECRET, spec, {s.key: s.value for s in pod.secrets}))
    return out


def _security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _volumes(spec: DeploySpec, pod: PodConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": CONFIG_MAP}}]
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": MOUNT_CONFIG, "readOnly": True}]
    if pod.storage_path is not None:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": DATA_CLAIM}})
        mounts.append({"name": "data", "mountPath": pod.storage_path})
    # --workers N keeps its metrics files in a temporary directory; the root filesystem is read-only.
    volumes.append({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    if pod.htpasswd:
        volumes.append({"name": "htpasswd", "secret": {"secretName": HTPASSWD_SECRET, "defaultMode": 0o440}})
        mounts.append({"name": "htpasswd", "mountPath": MOUNT_AUTH, "readOnly": True})
    return volumes, mounts


def config_checksum(pod: PodConfig) -> str:
    """sha256 of config.yml: on the pod template, so that a changed ConfigMap rolls the pod."""
    return "sha256:" + hashlib.sha256(pod.text.encode()).hexdigest()


def deployment(spec: DeploySpec, pod: PodConfig) -> dict[str, Any]:
    """One replica, Recreate (a ReadWriteOnce volume cannot be mounted by two pods), probes, limits, non-root."""
    volumes, mounts = _volumes(spec, pod)
    env = [{"name": s.env, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": s.key}}}
           for s in pod.secrets]
    container: dict[str, Any] = {
        "name": APP,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", f"{MOUNT_CONFIG}/config.yml"],
        "ports": [{"name": "http", "containerPort": pod.port, "protocol": "TCP"}],
        # Ready only while the storage check passes (health.storagedriver: /debug/health answers 503 then).
        "readinessProbe": {"httpGet": {"path": "/debug/health", "port": "http"}, "periodSeconds": 5,
                           "timeoutSeconds": 3, "failureThreshold": 2},
        # Alive while it accepts connections: a storage outage makes it unready, not restarted.
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3,
                          "failureThreshold": 6},
        "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2, "failureThreshold": 60},
        "resources": RESOURCES,
        "securityContext": _security(),
        "volumeMounts": mounts,
    }
    if env:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(APP, spec.namespace),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector()},
            "template": {
                "metadata": {"labels": labels(), "annotations": {"checksum/config": config_checksum(pod)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    # Uploads in flight get this long to finish after SIGTERM.
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                                        "fsGroup": RUN_AS, "fsGroupChangePolicy": "OnRootMismatch",
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def service(spec: DeploySpec) -> dict[str, Any]:
    """NodePort: every node answers on the port, 127.0.0.1 included, and forwards to the pod."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(APP, spec.namespace),
        "spec": {
            "type": "NodePort",
            "selector": selector(),
            "ports": [{"name": "http", "port": 5000, "targetPort": "http", "nodePort": spec.node_port,
                       "protocol": "TCP"}],
        },
    }


def ingress(spec: DeploySpec) -> dict[str, Any]:
    """HTTPS through K3s's Traefik on the websecure entrypoint (its default certificate without --tls-secret)."""
    meta = _meta(APP, spec.namespace)
    meta["annotations"] = {"traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
                           "traefik.ingress.kubernetes.io/router.tls": "true"}
    tls: dict[str, Any] = {"hosts": [spec.host]}
    if spec.tls_secret:
        tls["secretName"] = spec.tls_secret
    backend = {"service": {"name": APP, "port": {"name": "http"}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": "traefik",
            "tls": [tls],
            "rules": [{"host": spec.host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                                                "backend": backend}]}}],
        },
    }


def traefik_config() -> dict[str, Any]:
    """K3s's HelmChartConfig for its Traefik: no 60 s cut on request bodies (see TRAEFIK_READ_TIMEOUT)."""
    ports = {port: {"transport": {"respondingTimeouts": {"readTimeout": TRAEFIK_READ_TIMEOUT}}}
             for port in ("web", "websecure")}
    values = yaml.safe_dump({"ports": ports}, sort_keys=False)
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChartConfig",
        "metadata": {"name": "traefik", "namespace": "kube-system", "labels": labels("ingress")},
        "spec": {"valuesContent": values},
    }
