"""`k3sreg mirrors explain IMAGE`: the requests containerd makes for one pull, in order.

We read the hosts.toml files (rendered from a registries.yaml, or an existing certs.d) the way containerd's
`ConfigureHosts` does: directory `certs.d/<host_port_>`, `certs.d/<host:port>`, then `certs.d/_default`;
a file that is not valid TOML or lacks the `[host]` table is ignored (built-in default only); every
`[host."…"]` table in file order, then the root `server`. For every host the resolver builds
`<scheme>://<host><path>/<repository>/manifests/<ref>` and adds `?ns=<registry>` when the host is not the
image's own registry. Any connection error, TLS error, 404 or other status >= 400 moves on to the next host,
for each request separately (each blob too).

Runtimes differ on a root without `server`: upstream containerd then still falls back to the registry itself;
the K3s containerd build does not (only `server = ""` falls back, k3s #9728). Rewrites exist only in the K3s
build.
"""

from __future__ import annotations

import ipaddress
import posixpath
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from k3sreg.k3s.endpoints import EndpointError, is_localhost, parse_url, split_host_port
from k3sreg.k3s.model import RegistriesYaml
from k3sreg.k3s.rewrites import apply_rewrites
from k3sreg.oci.reference import DOCKER_HUB, DOCKER_HUB_HOST, ImageRef, parse_image

RUNTIMES = ("k3s", "containerd")
_PUBLIC_SUFFIXES = (".docker.io", ".gcr.io", ".pkg.dev", ".amazonaws.com", ".azurecr.io", ".quay.io")
_PUBLIC_HOSTS = {"docker.io", "gcr.io", "ghcr.io", "quay.io", "registry.k8s.io", "k8s.gcr.io",
                 "public.ecr.aws", "mcr.microsoft.com", "nvcr.io", "registry.gitlab.com", "docker.elastic.co"}
_PRIVATE_SUFFIXES = (".local", ".internal", ".lan", ".svc", ".cluster.local", ".localdomain", ".home.arpa",
                     ".test", ".example", ".invalid", ".localhost")


@dataclass
class Hop:
    """One host containerd asks, with what it sends and what happens next."""

    url: str
    host: str
    source: str
    capabilities: list[str]
    tls: str
    auth: str
    repository: str
    rewritten_by: str | None
    ns: bool
    public: bool


@dataclass
class Plan:
    """The ordered requests of one pull, and the warnings about them."""

    image: str
    registry: str
    hosts_file: str | None
    resolve: list[Hop] = field(default_factory=list)
    fetch: list[Hop] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for `explain --json`."""
        from dataclasses import asdict

        return asdict(self)


def is_public(host: str) -> bool:
    """Whether a registry host is on the public internet (an air-gapped node cannot reach it)."""
    name, _ = split_host_port(host)
    if is_localhost(host):
        return False
    try:
        return ipaddress.ip_address(name).is_global
    except ValueError:
        pass
    if name in _PUBLIC_HOSTS or name.endswith(_PUBLIC_SUFFIXES):
        return True
    return not ("." not in name or name.endswith(_PRIVATE_SUFFIXES))


def host_dirs(registry: str) -> list[str]:
    """Directories containerd looks for, in order (`host_port_`, `host:port`, `_default`)."""
    out = []
    idx = registry.rfind(":")
    if idx > 0:
        out.append(registry[:idx] + "_" + registry[idx + 1:] + "_")
    return [*out, registry, "_default"]


@dataclass
class _Host:
    scheme: str
    host: str
    path: str
    capabilities: list[str]
    table: Mapping[str, Any]
    source: str


def _parse_server(server: str, table: Mapping[str, Any], source: str) -> _Host:
    if not server.startswith("http"):
        server = "https://" + server
    try:
        # containerd's url.Parse: query and fragment dropped, %-escapes of the path decoded
        u = parse_url(server)
        scheme, host, path = u.scheme, u.host, u.decoded_path
    except EndpointError:
        scheme, _, rest = server.partition("://")
        host, slash, tail = rest.partition("/")
        path = slash + tail
    # Go's path.Clean, which (unlike POSIX normpath) also folds a leading "//"
    path = "/" + posixpath.normpath(path).lstrip("/") if path.startswith("/") else (
        posixpath.normpath(path) if path else "")
    override = bool(table.get("override_path"))
    if path and not path.endswith("/v2") and not override:
        path += "/v2"
    elif not path and not override:
        path = "/v2"
    caps = [str(c).lower() for c in table.get("capabilities", [])] or ["pull", "resolve", "push"]
    return _Host(scheme, host, path, caps, table, source)


def _default_host(registry: str, table: Mapping[str, Any]) -> _Host:
    if registry == DOCKER_HUB:
        return _Host("https", DOCKER_HUB_HOST, "/v2", ["pull", "resolve", "push"], table, "built-in default")
    _, port = split_host_port(registry)
    scheme = "http" if is_localhost(registry) and port not in ("", "443") else "https"
    return _Host(scheme, registry, "/v2", ["pull", "resolve", "push"], table, "built-in default")


def _hosts_from_file(registry: str, text: str | None, runtime: str, plan: Plan) -> list[_Host]:
    if text is None:
        return [_default_host(registry, {})]
    if not text:
        plan.notes.append(f"{plan.hosts_file} is empty: containerd reads certificate files of that directory "
                          "and uses its built-in default host")
        return [_default_host(registry, {})]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        plan.warnings.append(f"{plan.hosts_file} is not valid TOML ({e}): containerd ignores it and uses "
                             "only its built-in default")
        return [_default_host(registry, {})]
    tables = doc.get("host")
    if not isinstance(tables, dict):
        plan.warnings.append(f"{plan.hosts_file} has no [host] table: containerd 1.6/1.7 rejects it (\"invalid "
                             "`host` tree\") and uses only its built-in default")
        return [_default_host(registry, {})]
    hosts = [_parse_server(url, t, "[host] entry") for url, t in tables.items() if isinstance(t, dict)]
    server = doc.get("server")
    if isinstance(server, str) and server:
        hosts.append(_parse_server(server, doc, "server (default endpoint)"))
    elif server == "" or runtime == "containerd":
        default = _default_host(registry, doc)
        default.source = "server = \"\" (the registry itself)" if server == "" else "built-in default"
        hosts.append(default)
    else:
        plan.notes.append("no `server` line: the K3s containerd build does not fall back to the registry itself")
    return hosts


def _tls(h: _Host) -> str:
    t = h.table
    extra = []
    if t.get("ca"):
        ca = t["ca"] if isinstance(t["ca"], list) else [t["ca"]]
        extra.append("CA " + ", ".join(map(str, ca)))
    if t.get("client"):
        extra.append("client certificate")
    if t.get("skip_verify"):
        extra.append("certificate NOT verified")
    if h.scheme == "http":
        if extra:
            return "HTTPS first (" + "; ".join(extra) + "), plain HTTP if the TLS handshake fails"
        return "plain HTTP"
    return "HTTPS, " + ("; ".join(extra) if extra else "system CAs")


def _auth(host: str, registries: RegistriesYaml | None) -> str:
    if registries is None:
        return "unknown (credentials live in containerd's config.toml)"
    config = registries.configs.get(host)
    if config is not None and config.auth is not None and not config.auth.is_empty():
        return f"credentials of configs.\"{host}\" (sent when the host answers 401)"
    return "anonymous (a token is fetched if the host asks for one)"


def _hop(ref: ImageRef, h: _Host, verb: str, kind: str, ref_part: str, runtime: str,
         registries: RegistriesYaml | None) -> Hop:
    repository, by = ref.repository, None
    rewrite = h.table.get("rewrite")
    if runtime == "k3s" and isinstance(rewrite, dict) and rewrite:
        repository, by = apply_rewrites({str(k): str(v) for k, v in rewrite.items()}, repository)
    path = posixpath.join("/", h.path.lstrip("/"), repository, kind, ref_part)
    ns = ref.registry != h.host and not (ref.registry == DOCKER_HUB and h.host == DOCKER_HUB_HOST)
    url = f"{verb} {h.scheme}://{h.host}{path}" + (f"?ns={quote(ref.registry, safe='')}" if ns else "")
    return Hop(url, h.host, h.source, h.capabilities, _tls(h), _auth(h.host, registries), repository, by, ns,
               is_public(h.host))


def explain(image: str, files: Mapping[str, str], registries: RegistriesYaml | None = None,
            runtime: str = "k3s") -> Plan:
    """The plan for pulling `image` given hosts.toml `files` (`<dir>/hosts.toml` → content)."""
    ref = parse_image(image)
    chosen = next((d for d in host_dirs(ref.registry) if f"{d}/hosts.toml" in files), None)
    plan = Plan(str(ref), ref.registry, f"{chosen}/hosts.toml" if chosen else None)
    hosts = _hosts_from_file(ref.registry, files.get(f"{chosen}/hosts.toml") if chosen else None, runtime, plan)
    if ref.digest:
        plan.resolve = [_hop(ref, h, "HEAD", "manifests", ref.digest, runtime, registries)
                        for h in hosts if "pull" in h.capabilities]
    else:
        # containerd's resolver asks for pull AND resolve when it resolves a tag
        plan.resolve = [_hop(ref, h, "HEAD", "manifests", ref.tag, runtime, registries)
                        for h in hosts if {"pull", "resolve"} <= set(h.capabilities)]
    plan.fetch = [_hop(ref, h, "GET", "blobs", "<digest>", runtime, registries)
                  for h in hosts if "pull" in h.capabilities]
    if not plan.resolve:
        plan.warnings.append("no host can resolve this reference: the pull fails at once")
    elif plan.resolve[-1].public:
        plan.warnings.append(
            f"the last hop, {plan.resolve[-1].host}, is a public registry: an air-gapped node hangs there until "
            "the connection times out (30 s per request) before the pull fails; list only reachable "
            "endpoints and use --disable-default-registry-endpoint")
    return plan
