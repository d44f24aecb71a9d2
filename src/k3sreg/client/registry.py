"""The client of one remote registry: manifests by tag or digest, blobs streamed as they arrive, tags, and pushes.

One `RegistryClient` per registry (an upstream of the cache, or the target of `k3sreg images`). Requests go
through its `Transport` (auth, retries, redirects, proxies, rate limits, errors: see `transport`); this module
builds the URLs and reads the answers. Reads are GET/HEAD and retried; pushes are in `push`.

A blob cut mid-body raises Unavailable from the iterator (the caller may open it again from the offset it
reached: a Range request). Repository names are those clients use: Docker Hub's one-component names are sent
under `library/` (`oci.reference.canonical_repository`), so callers pass names unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from k3sreg.client.answers import attempts, content_range, describe_failure, descriptor_list, tag_page
from k3sreg.client.auth import pull_scope
from k3sreg.client.push import Pusher
from k3sreg.client.retry import NETWORK_ERRORS, GaveUp, RetryPolicy
from k3sreg.client.transport import Transport, read_limited
from k3sreg.config.limits import MANIFEST_SIZE
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import BlobUnknown, ManifestUnknown, NameUnknown, RegistryError, Unavailable
from k3sreg.oci.digest import Digest, InvalidDigest, is_digest
from k3sreg.oci.mediatypes import DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, MANIFEST_TYPES, OCI_INDEX
from k3sreg.oci.reference import canonical_repository

DEFAULT_ACCEPT = (*sorted(MANIFEST_TYPES),)
CHUNK_SIZE = 256 * 1024
MAX_TAGS = 100_000
_TAG_PAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What a HEAD on a manifest tells: its digest, media type and size in bytes."""

    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest as the registry served it; `digest` is checked against `data` (see RegistryClient.get_manifest)."""

    data: bytes
    media_type: str
    digest: Digest


class BlobStream:
    """A blob being downloaded from `offset` on: `size` is the whole blob's (None when the registry does not say);
    iterate for chunks as they come.

    Iterate once. A connection cut or a short body raises Unavailable from the iterator; the bytes are not
    verified here (the caller hashes them against the digest it asked for). A registry that ignores the Range
    of a resumed download sends the whole blob: the bytes before `offset` are skipped here.
    """

    def __init__(self, response: aiohttp.ClientResponse, where: str, offset: int = 0, timeout: float = 0) -> None:
        self._response = response
        self._where = where
        self._timeout = timeout
        self.offset = offset
        self.size: int | None = response.content_length
        self._skip = 0
        if offset and response.status == 206:
            span = content_range(response.headers.get("Content-Range", ""))
            if span is None or span[0] != offset:
                raise Unavailable(f"{where}: asked for bytes from {offset}, got Content-Range "
                                  f"{response.headers.get('Content-Range')!r}")
            self.size = span[2]
        elif offset:
            self._skip = offset
        self.media_type: str = response.headers.get("Content-Type", "application/octet-stream")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        received, skip = self.offset, self._skip
        try:
            async for chunk in self._response.content.iter_any():  # what arrived, bounded by READ_BUFFER
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                    if not chunk:
                        continue
                received += len(chunk)
                yield chunk
        except NETWORK_ERRORS as exc:
            raise Unavailable(
                f"{self._where}: the blob download broke off after {received} bytes: "
                f"{describe_failure(exc, self._timeout)}"
            ) from exc
        if self.size is not None and received != self.size:
            raise Unavailable(f"{self._where}: the blob download ended after {received} of {self.size} bytes")


class RegistryClient:
    """The client of the registry `settings` describes; reuse it for every request, `close()` it at shutdown.

    `session` is the aiohttp session to send through (None: one of its own, see `session.new_session`); `retry`
    replaces the policy made from `settings.retries`; `role` is how messages name the registry ("upstream",
    or "source" / "target" for `k3sreg images`).
    """

    def __init__(self, settings: UpstreamSettings, max_manifest_size: int = MANIFEST_SIZE, *,
                 session: aiohttp.ClientSession | None = None, retry: RetryPolicy | None = None,
                 role: str = "upstream") -> None:
        self.settings = settings
        self.name: str = settings.name
        self.transport = Transport(settings, session, retry, role)
        self._max_manifest = max_manifest_size

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections of its own session; the client may not be used afterwards."""
        await self.transport.close()

    def _repository(self, repo: str) -> str:
        return canonical_repository(self.name, repo)

    def _url(self, repo: str, kind: str, reference: str) -> URL:
        path = f"v2/{self._repository(repo)}/{kind}/{reference}"
        return self.transport.base.join(URL(path, encoded=True))

    def _where(self, repo: str) -> str:
        return f"{self.transport.role} {self.name} ({self.transport.display}), repository {self._repository(repo)}"

    async def _get(self, method: str, repo: str, kind: str, reference: str, accept: Sequence[str],
                   missing: type[RegistryError], url: URL | None = None,
                   extra: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        """A 2xx answer to a read of `repo` (`url` replaces the one built from kind/reference: a `Link`)."""
        headers = {"Accept": ", ".join(accept)} if accept else {}
        headers.update(extra or {})
        return await self.transport.request(
            method, url or self._url(repo, kind, reference), scope=pull_scope(self._repository(repo)),
            where=self._where(repo), missing=missing, headers=headers)

    async def head_manifest(self, repo: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT) -> ManifestHead:
        """Digest, media type and size of a manifest without its body; falls back to GET when no digest is sent."""
        response = await self._get("HEAD", repo, "manifests", reference, accept, ManifestUnknown)
        response.release()
        header = response.headers.get("Docker-Content-Digest")
        size = response.content_length
        if header is None or size is None:
            fetched = await self.get_manifest(repo, reference, accept)
            return ManifestHead(fetched.digest, fetched.media_type, len(fetched.data))
        digest = self._parse_digest(header, repo, reference)
        if is_digest(reference) and str(digest) != reference:
            raise Unavailable(f"{self._where(repo)}: asked for {reference}, the upstream answered {digest}")
        return ManifestHead(digest, _media_type(response), size)

    async def get_manifest(self, repo: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT) -> FetchedManifest:
        """The manifest's bytes, media type and digest; the digest always matches the bytes, or Unavailable.
        A body that breaks off is asked for again, as a failed request is."""

        async def attempt() -> tuple[bytes, aiohttp.ClientResponse]:
            response = await self._get("GET", repo, "manifests", reference, accept, ManifestUnknown)
            try:
                return await self._read_manifest(response, repo), response
            finally:
                response.release()

        try:
            data, response = await self.transport.retrying(attempt, f"{self.transport.role} {self.name}: GET manifest")
        except GaveUp as failed:
            raise Unavailable(f"{self._where(repo)}: the manifest download failed {attempts(failed.attempts)}: "
                              f"{self.transport.describe(failed.cause)}") from failed.cause
        media_type = _media_type(response)
        header = response.headers.get("Docker-Content-Digest")
        # The bytes must match both the digest asked for and the one the registry names (when it names one).
        expected = [self._parse_digest(d, repo, reference) for d in (reference, header) if d and is_digest(d)]
        if not expected:
            return FetchedManifest(data, media_type, Digest.of(data))
        for want in expected:
            # Schema 1 digests cover the payload without its signatures, so they cannot be checked on the bytes.
            if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
                break
            if Digest.of(data, want.algorithm) != want:
                raise Unavailable(f"{self._where(repo)}: the manifest for {reference} does not match the digest "
                                  f"{want}")
        return FetchedManifest(data, media_type, expected[0])

    async def list_tags(self, repo: str, limit: int = MAX_TAGS) -> list[str]:
        """The registry's tags of `repo`, following its `Link` pages (at most `limit`); NameUnknown when unknown."""
        return await self._pages(repo, self._url(repo, "tags", "list"), pull_scope(self._repository(repo)),
                                 "tags", limit)

    async def catalog(self, limit: int = MAX_TAGS) -> list[str]:
        """The registry's repositories (`/v2/_catalog`, following its `Link` pages, at most `limit`)."""
        url = self.transport.base.join(URL("v2/_catalog", encoded=True))
        return await self._pages("", url, "registry:catalog:*", "repositories", limit)

    async def referrers(self, repo: str, digest: Digest) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests whose subject is `digest` (the OCI 1.1 referrers API); None when the
        registry has no such API (it answers 404), so the caller may look for the fallback tag instead."""
        url = self._url(repo, "referrers", str(digest))
        try:
            response = await self._get("GET", repo, "referrers", str(digest), (OCI_INDEX,), NameUnknown, url)
        except NameUnknown:
            return None
        try:
            body = await read_limited(response, self._max_manifest)
        except NETWORK_ERRORS as exc:
            raise Unavailable(f"{self._where(repo)}: the referrers download failed: "
                              f"{self.transport.describe(exc)}") from exc
        finally:
            response.release()
        entries = descriptor_list(body, "manifests")
        if entries is None:
            raise Unavailable(f"{self._where(repo)}: the referrers answer is not an image index")
        return entries

    async def _pages(self, repo: str, first: URL, scope: str, key: str, limit: int) -> list[str]:
        """The string list `key` of a paginated answer (tags/list, _catalog), following `Link` headers."""
        found: list[str] = []
        url: URL | None = first
        where = self._where(repo) if repo else f"{self.transport.role} {self.name} ({self.transport.display})"
        while url is not None and len(found) < limit:
            response = await self.transport.request("GET", url, scope=scope, where=where, missing=NameUnknown,
                                                    headers={"Accept": "application/json"})
            try:
                body = await read_limited(response, _TAG_PAGE_BYTES)
            except NETWORK_ERRORS as exc:
                raise Unavailable(f"{where}: the {key} list download failed: "
                                  f"{self.transport.describe(exc)}") from exc
            finally:
                response.release()
            page = tag_page(body, key)
            if page is None:
                raise Unavailable(f"{where}: the {key} list is not a JSON object with a list of {key}")
            found.extend(page)
            following = response.links.get("next")
            url = response.url.join(URL(str(following["url"]), encoded=True)) if page and following else None
        return found[:limit]

    def open_blob(self, repo: str, digest: Digest, offset: int = 0) -> AbstractAsyncContextManager[BlobStream]:
        """`async with client.open_blob(repo, digest) as blob:` streams the blob (from `offset`, with a Range);
        entering raises BlobUnknown etc."""
        return self._open_blob(repo, digest, offset)

    @asynccontextmanager
    async def _open_blob(self, repo: str, digest: Digest, offset: int) -> AsyncIterator[BlobStream]:
        extra = {"Range": f"bytes={offset}-"} if offset else None
        response = await self._get("GET", repo, "blobs", str(digest), (), BlobUnknown, extra=extra)
        try:
            yield BlobStream(response, self._where(repo), offset, self.settings.timeout)
        finally:
            # Closing (not releasing) drops a half-read connection instead of draining it into the pool.
            response.close()

    async def has_blob(self, repo: str, digest: Digest) -> bool:
        """Whether the registry holds `digest` in `repo` (a HEAD, with the push scope: a push asks it first)."""
        return await self.pusher(repo).has_blob(digest)

    async def push_blob(self, repo: str, digest: Digest, size: int | None,
                        chunks: Callable[[], AsyncIterable[bytes]], *, mount_from: str | None = None,
                        chunk_size: int | None = None) -> bool:
        """Make the registry hold blob `digest` in `repo`; False when it already did (or mounted it from
        `mount_from`), True when `chunks()` was uploaded: in one PUT, or in PATCHes of `chunk_size` bytes."""
        return await self.pusher(repo).push_blob(digest, size, chunks, mount_from, chunk_size)

    async def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> Digest:
        """Store manifest `data` under `reference` (a tag or its digest); the digest the registry names, which
        must be the digest of `data`."""
        return await self.pusher(repo).put_manifest(reference, data, media_type)

    def pusher(self, repo: str) -> Pusher:
        """The push steps for `repo` one by one (start an upload, send it, mount), for callers that need more
        than `push_blob`."""
        name = self._repository(repo)
        return Pusher(self.transport, name, self.transport.base.join(URL(f"v2/{name}/", encoded=True)),
                      self._where(repo))

    def _parse_digest(self, value: str, repo: str, reference: str) -> Digest:
        try:
            return Digest.parse(value)
        except InvalidDigest as exc:
            raise Unavailable(f"{self._where(repo)}: unusable digest for {reference}: {exc}") from None

    async def _read_manifest(self, response: aiohttp.ClientResponse, repo: str) -> bytes:
        if (response.content_length or 0) > self._max_manifest:
            raise Unavailable(f"{self._where(repo)}: the manifest is larger than {self._max_manifest} bytes")
        parts: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            total += len(chunk)
            if total > self._max_manifest:
                raise Unavailable(f"{self._where(repo)}: the manifest is larger than {self._max_manifest} bytes")
            parts.append(chunk)
        return b"".join(parts)


def _media_type(response: aiohttp.ClientResponse) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip() or "application/octet-stream"
