"""Pushing to a registry: blobs (found, mounted, or uploaded in one PUT or in chunks) and manifests.

    HEAD  /v2/<name>/blobs/<digest>                           200: there already, nothing to send
    POST  /v2/<name>/blobs/uploads/?mount=<digest>&from=<r>   201: mounted; 202 + Location: an upload instead
    POST  /v2/<name>/blobs/uploads/                           202 + Location: an upload session
    PUT   <location>&digest=<digest>   the whole blob         201                monolithic
    PATCH <location>  Content-Range: a-b, one chunk           202 + Location     chunked, then
    PUT   <location>&digest=<digest>   empty                  201
    PUT   /v2/<name>/manifests/<reference>                    201 + Docker-Content-Digest

Every request asks for the push scope (`repository:<name>:pull,push`; a mount also for pulling its source).
The HEAD that starts a blob push meets the registry's challenge, so the uploads after it carry their token from
the start: a body is sent once only (an upload is neither retried nor re-sent after a 401), as the registry may
already have taken part of it. Chunks are read into memory one at a time, so memory does not grow with the blob.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from k3sreg.client.auth import pull_scope, push_scope
from k3sreg.client.transport import Transport
from k3sreg.errors import BlobUnknown, BlobUploadUnknown, NameUnknown, RegistryError, Unavailable
from k3sreg.oci.digest import Digest, InvalidDigest

OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class Pusher:
    """Pushes to repository `name` (as the registry names it) through `transport`; `base` is `.../v2/<name>/`,
    `where` names registry and repository in messages."""

    transport: Transport
    name: str
    base: URL
    where: str

    async def has_blob(self, digest: Digest) -> bool:
        """Whether the repository holds `digest` (a HEAD)."""
        try:
            response = await self._send("HEAD", self._at(f"blobs/{digest}"), BlobUnknown)
        except BlobUnknown:
            return False
        response.release()
        return True

    async def start_upload(self, mount: Digest | None = None, source: str | None = None) -> URL | None:
        """A new upload session's URL; with `mount` and `source`, None when the registry mounted the blob from
        repository `source` instead (it starts an upload when it cannot)."""
        url, scope = self._at("blobs/uploads/"), push_scope(self.name)
        if mount is not None and source is not None:
            url = url.with_query({"mount": str(mount), "from": source})
            scope += " " + pull_scope(source)
        response = await self._send("POST", url, NameUnknown, scope=scope, headers={"Content-Length": "0"})
        response.release()
        if mount is not None and response.status == 201:
            return None
        return self._location(response)

    async def upload(self, location: URL, digest: Digest, size: int | None, chunks: AsyncIterable[bytes],
                     chunk_size: int | None = None) -> None:
        """Send the blob's bytes to upload `location` and commit them as `digest`: in one PUT, or in PATCHes of
        `chunk_size` bytes and an empty PUT."""
        if chunk_size is None:
            headers = {"Content-Type": OCTETS, **({"Content-Length": str(size)} if size is not None else {})}
            await self._commit(location, digest, headers, chunks)
            return
        offset = 0
        async for piece in _pieces(chunks, chunk_size):
            headers = {"Content-Type": OCTETS, "Content-Length": str(len(piece)),
                       "Content-Range": f"{offset}-{offset + len(piece) - 1}"}
            response = await self._send("PATCH", location, BlobUploadUnknown, headers=headers, data=piece,
                                        replayable=False)
            response.release()
            location = self._location(response)
            offset += len(piece)
        await self._commit(location, digest, {"Content-Length": "0"}, None)

    async def push_blob(self, digest: Digest, size: int | None, chunks: Callable[[], AsyncIterable[bytes]],
                        mount_from: str | None = None, chunk_size: int | None = None) -> bool:
        """Make the repository hold `digest`: False when it did already or mounted it from `mount_from`, True
        when `chunks()` was uploaded."""
        if await self.has_blob(digest):
            return False
        location = await self.start_upload(digest if mount_from else None, mount_from)
        if location is None:
            return False
        await self.upload(location, digest, size, chunks(), chunk_size)
        return True

    async def put_manifest(self, reference: str, data: bytes, media_type: str) -> Digest:
        """Store manifest `data` under `reference`; its digest, as the registry names it and `data` hashes."""
        response = await self._send("PUT", self._at(f"manifests/{reference}"), NameUnknown,
                                    headers={"Content-Type": media_type}, data=data)
        response.release()
        named = response.headers.get("Docker-Content-Digest")
        try:
            digest = Digest.parse(named) if named else Digest.of(data)
        except InvalidDigest as exc:
            raise Unavailable(f"{self.where}: unusable digest for {reference}: {exc}") from None
        if Digest.of(data, digest.algorithm) != digest:
            raise Unavailable(f"{self.where}: the registry stored {reference} as {digest}, which is not the "
                              "digest of the manifest sent")
        return digest

    async def _commit(self, location: URL, digest: Digest, headers: dict[str, str], data: Any) -> None:
        url = location.update_query({"digest": str(digest)})
        response = await self._send("PUT", url, BlobUploadUnknown, headers=headers, data=data, replayable=False)
        response.release()

    def _at(self, path: str) -> URL:
        return self.base.join(URL(path, encoded=True))

    def _location(self, response: aiohttp.ClientResponse) -> URL:
        location = response.headers.get("Location")
        if not location:
            raise Unavailable(f"{self.where}: {response.method} {response.url.path} answered "
                              f"HTTP {response.status} without a Location")
        return response.url.join(URL(location, encoded=True))

    async def _send(self, method: str, url: URL, missing: type[RegistryError], scope: str = "", **options: Any
                    ) -> aiohttp.ClientResponse:
        return await self.transport.request(method, url, scope=scope or push_scope(self.name), where=self.where,
                                            missing=missing, **options)


async def _pieces(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """`chunks` regrouped into pieces of `size` bytes (the last one shorter)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
