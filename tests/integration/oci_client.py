"""A small OCI Distribution client for the conformance tests, built on aiohttp's client, plus the server they share.

Each conformance module starts one ``k3sreg serve`` subprocess (``serve_k3sreg``) and gives every test a fresh
``RegistryClient``. The client sends exactly what a test asks for (no retries, redirects or decompression) and
returns a ``Reply`` that keeps status, headers and raw body, so a test can assert on any of them.

Content helpers build OCI documents the way a client would push them: ``blob`` (bytes plus descriptor),
``image_manifest``/``image_index`` (canonical JSON bytes plus digest) and ``RegistryClient.push_image``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import aiohttp
from multidict import CIMultiDictProxy

from tests.peers.registry import K3sregServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# The spec's "empty descriptor": the two bytes `{}`, with a digest every client hard-codes.
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
# Error codes the spec allows in a JSON error body (its table "Error Codes").
SPEC_ERROR_CODES = frozenset(
    [
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    ]
)
T = TypeVar("T")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def sha256(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """Bytes to push, with the descriptor that references them."""

    data: bytes
    media_type: str = OCI_LAYER

    @property
    def digest(self) -> str:
        """``sha256:`` digest of the bytes."""
        return sha256(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """An OCI descriptor (mediaType, digest, size) plus ``extra`` fields."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass(frozen=True)
class Document:
    """A manifest or index as pushed: its exact bytes, media type and digest."""

    body: bytes
    media_type: str

    @property
    def digest(self) -> str:
        """``sha256:`` digest of the exact bytes."""
        return sha256(self.body)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """A descriptor pointing at this document."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body), **extra}


def image_manifest(
    config: Blob,
    layers: list[Blob],
    *,
    subject: Document | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    media_type: str = OCI_MANIFEST,
) -> Document:
    """An image manifest over ``config`` and ``layers`` (optionally a referrer of ``subject``)."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["config"] = config.descriptor()
    doc["layers"] = [layer.descriptor() for layer in layers]
    if subject is not None:
        doc["subject"] = subject.descriptor()
    if annotations:
        doc["annotations"] = dict(annotations)
    # Indented on purpose: the registry must keep these exact bytes, not a re-serialised form.
    return Document(json.dumps(doc, indent=2).encode(), media_type)


def image_index(
    manifests: list[Document],
    *,
    subject: Document | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Document:
    """An OCI image index over ``manifests`` (optionally a referrer of ``subject``)."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX}
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["manifests"] = [m.descriptor() for m in manifests]
    if subject is not None:
        doc["subject"] = subject.descriptor()
    if annotations:
        doc["annotations"] = dict(annotations)
    return Document(json.dumps(doc, indent=2).encode(), OCI_INDEX)


@dataclass
class Reply:
    """One HTTP answer: status, headers and the raw body (empty for HEAD)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def location(self) -> str:
        """The ``Location`` header ('' when absent)."""
        return self.headers.get("Location", "")

    def next_link(self) -> str | None:
        """The target of a ``Link: <...>; rel="next"`` header, if any."""
        m = _LINK_NEXT.search(self.headers.get("Link", ""))
        return m.group(1) if m else None

    def error_codes(self) -> list[str]:
        """The ``code`` of each entry of an OCI error body, checking the body's shape on the way."""
        doc = self.json()
        assert isinstance(doc, dict) and isinstance(doc.get("errors"), list) and doc["errors"], doc
        codes: list[str] = []
        for entry in doc["errors"]:
            assert isinstance(entry, dict) and isinstance(entry.get("code"), str), entry
            assert re.fullmatch(r"[A-Z_]+", entry["code"]), entry
            assert isinstance(entry.get("message", ""), str), entry
            codes.append(entry["code"])
        return codes


def assert_error(reply: Reply, status: int, *codes: str) -> None:
    """``reply`` is ``status`` with an OCI JSON error body whose first code is one of ``codes``."""
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers.get("Content-Type", "").split(";")[0].strip() == "application/json", reply.headers
    found = reply.error_codes()
    assert found[0] in SPEC_ERROR_CODES, found
    assert found[0] in codes, (found, codes)


@dataclass
class PushedImage:
    """What ``push_image`` put in a repository."""

    repo: str
    tag: str
    config: Blob
    layers: list[Blob]
    manifest: Document


class RegistryClient:
    """Requests against one registry base URL; paths are relative to it, ``Location`` values are resolved."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    def url(self, path_or_url: str) -> str:
        """An absolute URL for a path (``/v2/...``) or a ``Location`` value (relative or absolute)."""
        return urljoin(self.base_url + "/", path_or_url)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request and read the whole answer."""
        async with self.session.request(
            method, self.url(path), data=body, headers=dict(headers or {}), params=params, allow_redirects=False
        ) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def start_upload(self, repo: str, params: Mapping[str, str] | None = None) -> Reply:
        """``POST /v2/<repo>/blobs/uploads/`` with an empty body."""
        return await self.request(
            "POST", f"/v2/{repo}/blobs/uploads/", body=b"", headers={"Content-Length": "0"}, params=params
        )

    async def push_blob(self, repo: str, blob: Blob) -> Reply:
        """Push ``blob`` the way every registry supports (POST, then PUT ?digest= with the bytes); 201 expected."""
        session = await self.start_upload(repo)
        assert session.status == 202, (session.status, session.body[:300])
        reply = await self.request(
            "PUT",
            session.location,
            body=blob.data,
            headers={"Content-Type": "application/octet-stream"},
            params={"digest": blob.digest},
        )
        assert reply.status == 201, (reply.status, reply.body[:300])
        return reply

    async def put_manifest(self, repo: str, reference: str, doc: Document) -> Reply:
        """``PUT /v2/<repo>/manifests/<reference>`` with ``doc``'s bytes and media type."""
        return await self.request(
            "PUT", f"/v2/{repo}/manifests/{reference}", body=doc.body, headers={"Content-Type": doc.media_type}
        )

    async def push_image(
        self, repo: str, tag: str, *, seed: str = "", layers: int = 2, layer_size: int = 3000
    ) -> PushedImage:
        """Push a config, ``layers`` distinct layers and an OCI manifest tagged ``tag``; all steps must succeed."""
        config = Blob(json.dumps({"architecture": "amd64", "os": "linux", "seed": seed + tag}).encode(), OCI_CONFIG)
        blobs = [Blob(filler(f"{seed}{repo}{tag}{i}", layer_size)) for i in range(layers)]
        for blob in [config, *blobs]:
            await self.push_blob(repo, blob)
        manifest = image_manifest(config, blobs)
        reply = await self.put_manifest(repo, tag, manifest)
        assert reply.status == 201, (reply.status, reply.body[:300])
        return PushedImage(repo, tag, config, blobs, manifest)


def filler(seed: str, size: int) -> bytes:
    """``size`` deterministic bytes derived from ``seed`` (different seeds, different bytes)."""
    # A hash chain: distinct per seed and incompressible, like a real layer.
    out = bytearray()
    block = seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


@contextmanager
def serve_k3sreg(workdir: Path, *, delete_enabled: bool = True, workers: int = 1) -> Iterator[K3sregServer]:
    """A running ``k3sreg serve --workers N`` on a free loopback port, data under ``workdir``; stopped on exit."""
    config = {"storage": {"delete": {"enabled": delete_enabled}}}
    with K3sregServer(workdir, config=config, workers=workers) as server:
        yield server


def new_session(*, fresh_connections: bool = False) -> aiohttp.ClientSession:
    """A client session that sends only what a test asks for: no decompression, no cookie jar, short timeouts.

    ``fresh_connections`` opens a new connection per request, so that a multi-worker server spreads them."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=fresh_connections),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=30),
    )


@asynccontextmanager
async def connect(base_url: str, *, fresh_connections: bool = False) -> AsyncIterator[RegistryClient]:
    """A ``RegistryClient`` on a new session (see ``new_session``), closed on exit."""
    async with new_session(fresh_connections=fresh_connections) as session:
        yield RegistryClient(session, base_url)


def run_with_client(base_url: str, work: Callable[[RegistryClient], Awaitable[T]]) -> T:
    """Run ``work(client)`` to completion on a private event loop: for set-up in synchronous module fixtures."""

    async def main() -> T:
        async with connect(base_url) as client:
            return await work(client)

    return asyncio.run(main())
