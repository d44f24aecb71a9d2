"""`deploy render`: the objects in apply order, as one multi-document YAML or as one file per object.

    Namespace, PersistentVolumeClaim, ConfigMap, Secret(s), Deployment, Service (NodePort), Ingress,
    HelmChartConfig kube-system/traefik
    + the nodes' registries.yaml (not a Kubernetes object: for `k3sreg nodes apply`)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from k3sreg import __version__
from k3sreg.k3s.generate import InitSpec, generate
from k3sreg.kube import objects
from k3sreg.kube.config import PodConfig, pod_config
from k3sreg.kube.spec import DeploySpec

RENDERED_BY = "# Rendered by `k3sreg deploy render`"
"""How every file `deploy render` writes begins (how a later render recognises its own files)."""
HEADER = f"{RENDERED_BY} (k3sreg {__version__}).\n"


@dataclass(frozen=True)
class Rendered:
    """Everything `deploy render` produces."""

    objects: list[dict[str, Any]]
    pod: PodConfig
    registries: str

    @property
    def has_secrets(self) -> bool:
        return any(o["kind"] == "Secret" for o in self.objects)


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (config.yml stays readable), never anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: Any) -> str:
    """One object as YAML, keys in the order they were built."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)


def render(spec: DeploySpec, raw_config: dict[str, Any] | None, upstreams: Sequence[str] = ()) -> Rendered:
    """The objects for `spec`, with `raw_config` (None: the container default) adapted to the pod.

    `upstreams` are the registry names the config pulls through (they get a mirror in registries.yaml).
    """
    pod = pod_config(raw_config, spec.host, htpasswd=spec.htpasswd is not None)
    docs: list[dict[str, Any]] = [objects.namespace(spec)]
    if pod.storage_path is not None:
        docs.append(objects.claim(spec))
    docs.append(objects.config_map(spec, pod))
    docs += objects.secrets(spec, pod)
    docs += [objects.deployment(spec, pod), objects.service(spec), objects.ingress(spec)]
    if spec.traefik_config:
        docs.append(objects.traefik_config())
    return Rendered(docs, pod, registries_yaml(spec, upstreams))


def registries_yaml(spec: DeploySpec, upstreams: Sequence[str]) -> str:
    """The nodes' registries.yaml: docker.io, each upstream and the Ingress host, all mirrored by the NodePort."""
    mirrors = list(dict.fromkeys(["docker.io", *upstreams, spec.host]))
    init = InitSpec(endpoints=[spec.endpoint], mirrors=mirrors, ca_file=spec.node_ca_file or "",
                    username=spec.node_username or "", password=spec.node_password or "")
    return generate(init)


def as_stream(rendered: Rendered) -> str:
    """All objects as one multi-document YAML (for `kubectl apply -f -` or K3s's manifests directory)."""
    return HEADER + "".join("---\n" + dump(doc) for doc in rendered.objects)


def file_name(index: int, doc: dict[str, Any]) -> str:
    """`NN-kind-name.yaml`: `kubectl apply -f DIR` applies files in name order, so the Namespace comes first."""
    return f"{index:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"


def as_files(rendered: Rendered) -> dict[str, str]:
    """One file per object plus kustomization.yaml (for `kubectl apply -k DIR`)."""
    files = {file_name(i, doc): HEADER + dump(doc) for i, doc in enumerate(rendered.objects, 1)}
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": list(files)}
    files["kustomization.yaml"] = HEADER + dump(kustomization)
    return files
