"""Shared material for the end-to-end auth tests: users written by `k3sreg htpasswd`, a CA and certificates
written by `k3sreg certs`, the `auth`/`access` config sections, raw HTTP with any headers from any loopback
address, and the register of secrets that no log line or error body may ever show.

API:
  ``PASSWORDS`` (user -> password), ``RULES`` (the `access` section), ``ISSUER``/``SERVICE`` (token settings).
  ``SECRETS``: every password, Basic value, token and private key the tests use; ``leaks(text)`` lists those
  found in `text` (a JWT-shaped string counts even when unregistered).
  ``write_users(path)``: the htpasswd file, through the real CLI (password on stdin).
  ``make_pki(directory, hosts)``: ``Pki`` through `k3sreg certs init` / `issue` (server for `hosts`, a node
  client certificate `node1`, a token signer); keys registered as secrets.
  ``htpasswd_auth(users)``, ``token_auth(users, pki)``, ``control_token_auth(pki)``: config sections.
  ``send(base_url, method, path, headers=(), body=None, source=None) -> Reply``: one request, the path sent as
  written (no normalising), headers repeatable, from loopback address `source`; asserts the answer leaks nothing.
  ``basic(user, password)``, ``fetch_token(base_url, user, *scopes)``, ``creds(user)`` (`user:password`).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from k3sreg.auth.certs import Issued, load_ca
from tests.peers.registry import K3SREG_BIN

ISSUER, SERVICE = "k3sreg-auth-tests", "k3sreg-under-test"
PASSWORDS = {
    "admin": "adm-9f3c1e7b-Pass",
    "ci": "ci-5d2a8e44-Pass",
    "reader": "rdr-71b0c9d3-Pass",
    "hubuser": "hub-2e8f6a10-Pass",
    "nodes": "nod-c44e9b21-Pass",
}
RULES: list[dict[str, Any]] = [
    {"users": ["admin"], "repositories": ["**"], "actions": ["*"]},
    {"users": ["ci"], "repositories": ["team/**", "ci/**"], "actions": ["pull", "push"]},
    {"users": ["reader"], "repositories": ["public/**", "library/**"], "actions": ["pull"]},
    {"users": ["hubuser"], "repositories": ["docker.io/**"], "actions": ["pull"]},
    {"users": ["nodes"], "repositories": ["**"], "actions": ["pull"]},
    {"anonymous": True, "repositories": ["public/**"], "actions": ["pull"]},
]
SECRETS: set[str] = set(PASSWORDS.values())
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


def basic(user: str, password: str | None = None) -> str:
    """`Basic <base64(user:password)>` (the user's own password by default), registered as a secret."""
    value = "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user] if password is None else password}".encode()
                                        ).decode()
    SECRETS.add(value.split(" ", 1)[1])
    return value


def creds(user: str) -> str:
    """`user:password`, as skopeo's `--creds` takes it."""
    return f"{user}:{PASSWORDS[user]}"


def leaks(text: str) -> list[str]:
    """The registered secrets (shortened) and JWT-shaped strings found in `text`."""
    found = [s[:12] + "..." for s in SECRETS if s and s in text]
    return found + [m[:16] + "..." for m in _JWT.findall(text)] + (["PRIVATE KEY"] if "PRIVATE KEY" in text else [])


def write_users(path: Path) -> Path:
    """Every user of PASSWORDS in an htpasswd file, through `k3sreg htpasswd set --password-stdin` (cost 4)."""
    for user, password in PASSWORDS.items():
        subprocess.run([str(K3SREG_BIN), "htpasswd", "set", str(path), user, "--password-stdin", "--cost", "4"],
                       input=password + "\n", text=True, check=True, capture_output=True)
    return path


@dataclass(frozen=True)
class Pki:
    """Files written by `k3sreg certs`: the CA, a server certificate, a node client certificate, a token signer."""

    directory: Path
    ca: Issued
    signer: Issued

    def file(self, name: str) -> Path:
        """`<directory>/<name>` (ca.crt, registry.crt, registry.key, node1.crt, node1.key, tokens.crt...)."""
        return self.directory / name


def make_pki(directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> Pki:
    """A CA, a server certificate for `hosts`, client certificate `node1` and token signer `tokens`."""
    def certs(*args: str) -> None:
        subprocess.run([str(K3SREG_BIN), "certs", *args, "--dir", str(directory)], check=True, capture_output=True,
                       text=True)

    certs("init", "--name", "k3sreg test CA")
    certs("issue", *(a for h in hosts for a in ("--host", h)))
    certs("issue", "--client", "node1")
    certs("issue", "--signer", "tokens")
    for key in directory.glob("*.key"):
        SECRETS.add(key.read_text().strip().splitlines()[1])  # a line of the key's base64 body
    ca = load_ca(directory / "ca.crt", directory / "ca.key")
    signer_key = serialization.load_pem_private_key((directory / "tokens.key").read_bytes(), None)
    signer_cert = x509.load_pem_x509_certificate((directory / "tokens.crt").read_bytes())
    return Pki(directory, ca, Issued(signer_cert, signer_key))  # type: ignore[arg-type]


def htpasswd_auth(users: Path, realm: str = "k3sreg-tests") -> dict[str, Any]:
    """The `auth` section for Basic auth against `users`."""
    return {"htpasswd": {"realm": realm, "path": str(users)}}


def token_auth(users: Path, pki: Pki | None = None) -> dict[str, Any]:
    """`auth.token` with the built-in service (no realm: the registry's own /auth/token), also trusting tokens
    signed under the test CA when `pki` is given."""
    token: dict[str, Any] = {"service": SERVICE, "issuer": ISSUER, "builtin": {"htpasswd": str(users)}}
    if pki is not None:
        token["rootcertbundle"] = str(pki.file("ca.crt"))
    return {"token": token}


def control_token_auth(pki: Pki) -> dict[str, Any]:
    """docker-registry's `auth.token` trusting the test CA, with the same issuer and service."""
    return {"token": {"realm": "http://127.0.0.1:9/auth/token", "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(pki.file("ca.crt"))}}


@dataclass(frozen=True)
class Reply:
    """One answer: status, headers (lower-case names, last value wins), every WWW-Authenticate, body."""

    status: int
    headers: dict[str, str]
    challenges: list[str]
    body: bytes


def send(base_url: str, method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: bytes | None = None,
         source: str | None = None, context: ssl.SSLContext | None = None, timeout: float = 30,
         check: bool = True) -> Reply:
    """Send `method path` exactly as written, with `headers` (repeatable), from loopback address `source`; with
    `check`, fail when the answer shows a secret (a token answer shows its token: check=False)."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    address = (source, 0) if source else None
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, source_address=address,
                                           context=context or _unverified())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout, source_address=address)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        names = {name.lower() for name, _ in headers}
        for name, value in headers:
            conn.putheader(name, value)
        if "accept" not in names:
            conn.putheader("Accept", "application/vnd.oci.image.manifest.v1+json, "
                           "application/vnd.oci.image.index.v1+json, "
                           "application/vnd.docker.distribution.manifest.v2+json")
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                      resp.headers.get_all("WWW-Authenticate") or [], data)
    finally:
        conn.close()
    shown = leaks(data.decode("utf-8", "replace") + " ".join(reply.headers.values())) if check else []
    assert not shown, f"{method} {path}: the answer shows secrets {shown}"
    return reply


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def fetch_token(base_url: str, user: str | None, *scopes: str, service: str = SERVICE) -> str:
    """A token from the registry's built-in service (anonymous when `user` is None); registered as a secret."""
    query = "&".join([f"service={quote(service)}", *(f"scope={quote(s)}" for s in scopes)])
    reply = send(base_url, "GET", f"/auth/token?{query}", [("Authorization", basic(user))] if user else [],
                 check=False)
    assert reply.status == 200, reply
    token: str = json.loads(reply.body)["token"]
    SECRETS.add(token)
    return token
