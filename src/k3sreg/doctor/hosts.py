"""The endpoints containerd contacts, read from the hosts.toml files it uses, with each one's TLS settings.

containerd uses what is in certs.d, not what registries.yaml says: the network checks follow the files K3s
wrote (stale or not; `hosts.current` reports the difference), and the render of registries.yaml only where
certs.d is missing. An endpoint is one `[host."<url>"]` table or the root `server`, read as containerd reads
them (`k3s.explain`): the URL path is the API root, `/v2` appended unless `override_path`.
"""

from __future__ import annotations

import posixpath
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from k3sreg.k3s.endpoints import EndpointError, parse_url, split_host_port
from k3sreg.k3s.explain import host_dirs, is_public
from k3sreg.k3s.model import RegistriesYaml


@dataclass(frozen=True)
class Endpoint:
    """One host containerd may ask: where, which API root, and how it checks the server's certificate."""

    scheme: str
    host: str  # host[:port] as written in the URL
    root: str  # the API root path (`/v2`, or an override path)
    ca: tuple[str, ...] = ()  # CA files on the node
    client: tuple[tuple[str, str], ...] = ()  # (certificate, key) files on the node
    skip_verify: bool = False
    directories: tuple[str, ...] = ()  # the certs.d directories that list it

    @property
    def hostname(self) -> str:
        """The host without port or brackets."""
        return split_host_port(self.host)[0]

    @property
    def port(self) -> int:
        """The TCP port (443 / 80 by scheme when none is written)."""
        port = split_host_port(self.host)[1]
        return int(port) if port else (443 if self.scheme == "https" else 80)

    @property
    def origin(self) -> str:
        """`scheme://host[:port]`."""
        return f"{self.scheme}://{self.host}"

    @property
    def api(self) -> str:
        """The URL of the API root with its trailing slash (`GET` it to ping the registry)."""
        return f"{self.origin}{self.root.rstrip('/')}/"

    @property
    def label(self) -> str:
        """How findings name it: the URL as hosts.toml has it, without a default `/v2`."""
        return self.origin + ("" if self.root == "/v2" else self.root)

    def tls_key(self) -> tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...], bool]:
        """What makes two listings of the host the same for the checks (directories aside)."""
        return (self.scheme, self.host, self.ca, self.client, self.skip_verify)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str) and v)
    return ()


def _client(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, str):
        return ((value, ""),) if value else ()
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value) and value:
            return ((str(value[0]), str(value[1]) if len(value) > 1 else ""),)
        return tuple((str(v[0]), str(v[1]) if len(v) > 1 else "") for v in value
                     if isinstance(v, list) and v and isinstance(v[0], str))
    return ()


def _endpoint(url: str, table: Mapping[str, Any], directory: str) -> Endpoint | None:
    if "://" not in url:
        url = "https://" + url
    try:
        parsed = parse_url(url)
    except EndpointError:
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    path = parsed.decoded_path
    path = "/" + posixpath.normpath(path).lstrip("/") if path.startswith("/") else path
    if not table.get("override_path") and not path.rstrip("/").endswith("/v2"):
        path = path.rstrip("/") + "/v2"
    return Endpoint(parsed.scheme, parsed.host, path.rstrip("/") or "/", _strings(table.get("ca")),
                    _client(table.get("client")), bool(table.get("skip_verify")), (directory,))


def file_endpoints(directory: str, text: str) -> list[Endpoint]:
    """The endpoints of one hosts.toml in the order containerd tries them ([host] tables, then `server`); none
    when containerd would ignore the file (invalid TOML, no [host] table)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []
    tables = doc.get("host")
    if not isinstance(tables, dict):
        return []
    found = [_endpoint(url, t, directory) for url, t in tables.items() if isinstance(t, dict)]
    server = doc.get("server")
    if isinstance(server, str) and server:
        found.append(_endpoint(server, doc, directory))
    return [e for e in found if e is not None]


def pulled(files: Mapping[str, str], registries: RegistriesYaml | None) -> list[str]:
    """The `<dir>/hosts.toml` files pulls go through: the one containerd picks for each mirrored registry, and
    every other one unless its directory is only the side effect of a `configs` entry for one of those
    mirrors' endpoints (K3s writes one per configs key; only a pull naming that host directly would use it)."""
    if registries is None:
        return sorted(files)
    chosen = []
    for key in registries.mirrors:
        candidates = ["_default"] if key == "*" else host_dirs(key)
        rel = next((f"{d}/hosts.toml" for d in candidates if f"{d}/hosts.toml" in files), None)
        if rel is not None and rel not in chosen:
            chosen.append(rel)
    mirror_hosts = {ep.host for rel in chosen for ep in file_endpoints(rel.rsplit("/", 1)[0], files[rel])}
    others = [rel for rel in files if rel not in chosen and rel.rsplit("/", 1)[0] not in mirror_hosts]
    return sorted(chosen + others)


def endpoints(files: Mapping[str, str], skip: set[str], registries: RegistriesYaml | None = None) -> list[Endpoint]:
    """Every private endpoint of the files pulls go through (`pulled`) once, with the directories listing it;
    public registries (the fallback, checked on its own) and the hosts in `skip` are left out."""
    merged: dict[tuple[Any, ...], Endpoint] = {}
    for rel in pulled(files, registries):
        directory = rel.rsplit("/", 1)[0]
        for ep in file_endpoints(directory, files[rel]):
            if is_public(ep.host) or ep.host in skip:
                continue
            key = (*ep.tls_key(), ep.root)
            known = merged.get(key)
            if known is None:
                merged[key] = ep
            elif directory not in known.directories:
                merged[key] = Endpoint(known.scheme, known.host, known.root, known.ca, known.client,
                                       known.skip_verify, (*known.directories, directory))
    return list(merged.values())


def table_for(text: str, scheme: str, host: str) -> Endpoint | None:
    """The endpoint of hosts.toml `text` that is `scheme://host` (for the TLS of one hop of a pull)."""
    for ep in file_endpoints("", text):
        if ep.scheme == scheme and ep.host == host:
            return ep
    return None
