"""Where `--to` points: a registry URL (`http://10.0.0.5:30500`, `registry.local:5000`) or an OCI layout
directory (`oci:DIR`); and `URL/name:tag` destinations of `images push`.

A registry given without a scheme is reached over HTTPS, except loopback hosts (plain HTTP, as containerd
does) and any host with `--plain-http`. Credentials never come from the command line itself: the username
from `--username`, the password from the K3SREG_PASSWORD environment variable or `--password-stdin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from k3sreg.client import RegistryClient
from k3sreg.client.settings import registry_settings
from k3sreg.errors import UsageError
from k3sreg.images.copy import Target
from k3sreg.images.layout import LayoutTarget
from k3sreg.images.remote import RegistryTarget, registry_url
from k3sreg.oci.reference import parse_image


@dataclass(frozen=True)
class Connection:
    """How to reach the `--to` registry."""

    plain_http: bool = False
    username: str = ""
    password: str = ""
    ca: str | None = None
    insecure: bool = False
    certificate: str | None = None
    key: str | None = None

    def client(self, url: str, role: str = "target") -> RegistryClient:
        settings = registry_settings(url, username=self.username, password=self.password, ca=self.ca,
                                     insecure=self.insecure, certificate=self.certificate, key=self.key)
        return RegistryClient(settings, role=role)


def base_url(text: str, plain_http: bool) -> str:
    """The URL of a registry written as a URL or as host[:port]."""
    text = text.strip().rstrip("/")
    if text.startswith(("http://", "https://")):
        if "/" in text.split("://", 1)[1]:
            raise UsageError(f"{text}: give the registry's URL without a path (repositories keep their names)")
        return text
    if not text or "/" in text:
        raise UsageError(f"{text!r} is not a registry: give a URL such as http://10.0.0.5:30500 or oci:DIR")
    return registry_url(text, plain_http)


def open_target(spec: str, connection: Connection, scoped: bool = False) -> Target:
    """The target `--to` names: a layout for `oci:DIR`, else a registry."""
    if spec.startswith("oci:"):
        if not spec[4:]:
            raise UsageError("oci: needs a directory: --to oci:DIR")
        return LayoutTarget(Path(spec[4:]))
    return RegistryTarget(connection.client(base_url(spec, connection.plain_http)), scoped)


def split_destination(spec: str, plain_http: bool) -> tuple[str, str, str]:
    """(registry URL, repository, tag) of `images push --to URL/name:tag` (tag `latest` when left out)."""
    scheme = ""
    if spec.startswith(("http://", "https://")):
        scheme, spec = spec.split("://", 1)
    host, sep, rest = spec.partition("/")
    if not sep or not rest:
        raise UsageError(f"{spec!r}: give the destination as URL/REPOSITORY:TAG, e.g. 10.0.0.5:30500/team/app:1")
    try:
        ref = parse_image(f"{host}/{rest}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if ref.digest:
        raise UsageError(f"{spec!r}: push to a tag, not a digest")
    url = f"{scheme}://{host}" if scheme else base_url(host, plain_http)
    return url, ref.repository, ref.tag
