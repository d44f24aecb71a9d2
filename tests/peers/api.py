"""Minimal synchronous registry API calls for tests: what a registry answers, no redirects, no retries.

API:
  ``request(method, url, body=None, headers=None, timeout=30) -> Response`` (``status``, ``headers`` with
  lower-case names, ``body``; ``json()``); works for http and https (certificates not verified).
  ``catalog(base_url) -> list[str]`` (follows ``Link`` pages), ``tags(base_url, repo) -> list[str]`` (``[]``
  when the repo is unknown),
  ``manifest(base_url, repo, ref) -> Response`` (with an Accept header for every OCI and Docker manifest type),
  ``blob_head(base_url, repo, digest) -> Response``.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_LINK = re.compile(r'<([^>]+)>;\s*rel="?next"?')


@dataclass(frozen=True)
class Response:
    """A finished HTTP exchange."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> Response:
    """Send one request and read the whole answer."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def catalog(base_url: str, page: int = 100) -> list[str]:
    """Every repository name from ``GET /v2/_catalog``, following ``Link`` headers ``page`` names at a time."""
    repos: list[str] = []
    target: str | None = f"/v2/_catalog?n={page}"
    while target:
        resp = request("GET", target if target.startswith("http") else base_url + target)
        assert resp.status == 200, (resp.status, resp.body)
        repos += resp.json()["repositories"]
        link = _LINK.match(resp.headers.get("link", ""))
        target = link.group(1) if link else None
    return repos


def tags(base_url: str, repo: str) -> list[str]:
    """Tags of ``repo`` from ``GET /v2/<repo>/tags/list``; ``[]`` if the repository is unknown."""
    resp = request("GET", f"{base_url}/v2/{repo}/tags/list")
    if resp.status == 404:
        return []
    assert resp.status == 200, (resp.status, resp.body)
    found: list[str] | None = resp.json().get("tags")
    return found or []


def manifest(base_url: str, repo: str, ref: str, method: str = "GET") -> Response:
    """``GET`` (or ``HEAD``) a manifest by tag or digest, accepting every manifest media type."""
    return request(method, f"{base_url}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})


def blob_head(base_url: str, repo: str, digest: str) -> Response:
    """``HEAD`` a blob."""
    return request("HEAD", f"{base_url}/v2/{repo}/blobs/{digest}")
