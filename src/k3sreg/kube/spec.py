"""What `k3sreg deploy render` is asked for, and the checks that turn bad flags into one-line errors.

Kubernetes' own rules: names are DNS-1123 labels (namespace) or subdomains (other objects, hosts), a NodePort
lies in 30000-32767 (the default --service-node-port-range of K3s), sizes are resource quantities (20Gi).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from k3sreg import __version__
from k3sreg.errors import UsageError
from k3sreg.oci.names import TAG_RE, name_problem

APP = "k3sreg"
IMAGE_NAME = "localhost/k3sreg"
"""What `make image` tags its archives with: a local name, never pulled from a public registry."""
DEFAULT_IMAGE = f"{IMAGE_NAME}:{__version__}"
RUN_AS = 65532
"""The image's user and group (a fixed id, so runAsNonRoot can be checked without /etc/passwd)."""
NODE_PORTS = (30000, 32767)

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^(?=.*[1-9])[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_DOMAIN = re.compile(r"^(localhost|[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9-]+)(:[0-9]+)?$")


@dataclass(frozen=True)
class DeploySpec:
    """The flags of `deploy render`; `htpasswd` is the file's content, not its path."""

    namespace: str = "registry"
    node_port: int = 30500
    host: str = "registry.local"
    storage_size: str = "20Gi"
    storage_class: str = "local-path"
    image: str = DEFAULT_IMAGE
    tls_secret: str | None = None
    htpasswd: str | None = None
    traefik_config: bool = True
    node_endpoint: str | None = None
    node_ca_file: str | None = None
    node_username: str | None = None
    node_password: str | None = None

    @property
    def endpoint(self) -> str:
        """What containerd on every node contacts: kube-proxy answers a NodePort on each node's 127.0.0.1."""
        return self.node_endpoint or f"http://127.0.0.1:{self.node_port}"


def is_label(value: str) -> bool:
    """A DNS-1123 label: lower-case letters, digits and '-', alphanumeric at both ends, at most 63 characters."""
    return len(value) <= 63 and bool(_LABEL.match(value))


def is_subdomain(value: str) -> bool:
    """A DNS-1123 subdomain: dot-separated labels, at most 253 characters."""
    return 0 < len(value) <= 253 and all(is_label(part) for part in value.split("."))


def image_problem(ref: str) -> str | None:
    """Why `ref` is not an image reference such as `localhost/k3sreg:0.1.0`, or None."""
    name, at, digest = ref.partition("@")
    if at and not re.match(r"^sha256:[0-9a-f]{64}$", digest):
        return f"the digest {digest!r} is not sha256:<64 hex digits>"
    last = name.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        name, _, tag = name.rpartition(":")
        if not TAG_RE.match(tag):
            return f"the tag {tag!r} is not a valid tag"
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.match(first):
            return f"the registry {first!r} is not host[:port]"
        name = rest
    return name_problem(name)


def check(spec: DeploySpec) -> None:
    """Raise UsageError on the first flag Kubernetes or the nodes would refuse, saying how to fix it."""
    low, high = NODE_PORTS
    if not is_label(spec.namespace):
        raise UsageError(f"--namespace {spec.namespace!r}: a namespace is a DNS-1123 label (lower-case letters, "
                         "digits and '-', a letter or digit at both ends, at most 63 characters), e.g. registry")
    if not low <= spec.node_port <= high:
        raise UsageError(f"--node-port {spec.node_port}: a NodePort must be in {low}-{high} (K3s's "
                         "--service-node-port-range), e.g. --node-port 30500")
    if not _QUANTITY.match(spec.storage_size):
        raise UsageError(f"--storage-size {spec.storage_size!r}: write a Kubernetes quantity such as 20Gi "
                         "(binary: Ki, Mi, Gi, Ti) or 20G (decimal)")
    if not is_subdomain(spec.storage_class):
        raise UsageError(f"--storage-class {spec.storage_class!r}: a StorageClass name is a DNS-1123 subdomain, "
                         "e.g. local-path (K3s's default)")
    if not is_subdomain(spec.host) or re.match(r"^[0-9.]+$", spec.host):
        raise UsageError(f"--host {spec.host!r}: the Ingress host is a DNS name without port or scheme "
                         "(lower case), e.g. registry.local")
    if spec.tls_secret is not None and not is_subdomain(spec.tls_secret):
        raise UsageError(f"--tls-secret {spec.tls_secret!r}: a Secret name is a DNS-1123 subdomain, e.g. "
                         "registry-tls")
    problem = image_problem(spec.image)
    if problem:
        raise UsageError(f"--image {spec.image!r}: {problem}; e.g. --image {DEFAULT_IMAGE}")
    if spec.node_endpoint is not None and not re.match(r"^https?://[^/\s]+/?$", spec.node_endpoint):
        raise UsageError(f"--node-endpoint {spec.node_endpoint!r}: give the scheme, host and port nodes use, "
                         f"e.g. http://10.0.0.5:{spec.node_port}")
    if spec.node_ca_file is not None and not spec.node_ca_file.startswith("/"):
        raise UsageError(f"--node-ca-file {spec.node_ca_file!r}: give the absolute path of the CA file on the nodes")
    if spec.node_ca_file and not spec.endpoint.startswith("https://"):
        raise UsageError("--node-ca-file needs an https:// --node-endpoint (the NodePort itself is plain HTTP)")
    if bool(spec.node_username) != bool(spec.node_password):
        raise UsageError("--node-username needs its password in the K3SREG_NODE_PASSWORD environment variable")
