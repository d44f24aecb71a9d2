"""The pull-through cache of one upstream, with the read methods of a local repository (`Repository`).

Manifests by digest are immutable: once cached they are served without asking the upstream. A tag is trusted
for `tagttl` after the upstream last confirmed it (the mtime of its `current` link); then it is re-checked with
a HEAD bounded by a short timeout, and when the upstream is down, slow or failing the cached tag is served
and logged as stale. `offline: true` never contacts the upstream. Every access is recorded on the store's
access clock, which eviction reads.

What an upstream sends that is not what was asked for (bytes that do not match the digest asked for or the
digest it names, an HTML page with 200 in place of a manifest) is an upstream failure, never the client's:
nothing is stored, and the answer is the one given when the upstream is down (the cached tag, else
UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from k3sreg import errors
from k3sreg.client.registry import RegistryClient
from k3sreg.oci.digest import Digest, is_digest
from k3sreg.oci.manifest import Descriptor
from k3sreg.storage.access import AccessClock
from k3sreg.storage.blobs import BlobInfo
from k3sreg.storage.manifests import StoredManifest
from k3sreg.storage.store import Store
from k3sreg.upstream import metrics
from k3sreg.upstream.fill import FillCoordinator, Source, is_committed
from k3sreg.upstream.routing import Target

log = logging.getLogger("k3sreg.upstream")
_UNREACHABLE = (errors.Unavailable, errors.TooManyRequests, TimeoutError)


@dataclass(frozen=True, slots=True)
class FillingBlob(BlobInfo):
    """A blob served while it downloads."""

    source: Source | None = None


class ProxyRepository:
    """Reads of `target` (an upstream's repository), served from the cache and filled from the upstream."""

    def __init__(self, store: Store, client: RegistryClient, fills: FillCoordinator, target: Target,
                 flights: dict[tuple[str, str], asyncio.Future[StoredManifest]], tag_timeout: float,
                 access: AccessClock):
        assert target.upstream is not None
        self.store, self.client, self.fills, self.target = store, client, fills, target
        self.settings = target.upstream
        self._flights, self._tag_timeout, self._access = flights, tag_timeout, access

    @property
    def repo(self) -> str:
        return self.target.cache_repo

    # --- manifests ------------------------------------------------------------------------------------
    async def get_manifest(self, reference: str, accept: Sequence[str]) -> StoredManifest:
        """The manifest for a tag or digest, from the cache when it may be, else from the upstream."""
        if is_digest(reference):
            try:
                stored = await self.store.get_manifest(self.repo, reference)
                return self._served("manifest", reference, stored, "hit")
            except errors.ManifestUnknown:
                if self.settings.offline:
                    raise
            stored = await self._single(reference, lambda: self._fetch(reference, None, accept))
            return self._served("manifest", reference, stored, "miss")
        return await self._tag(reference, accept)

    async def _tag(self, tag: str, accept: Sequence[str]) -> StoredManifest:
        try:
            cached: StoredManifest | None = await self.store.get_manifest(self.repo, tag)
        except errors.ManifestUnknown:
            cached = None
        if cached is not None:
            checked = await self.store.tag_checked_at(self.repo, tag) or 0.0
            if self.settings.offline or time.time() - checked < self.settings.tagttl:
                return self._served("manifest", tag, cached, "hit")
        elif self.settings.offline:
            raise errors.ManifestUnknown(f"{tag} is not cached and upstream {self.settings.name} is offline")
        try:
            if cached is None:
                stored = await self._single(tag, lambda: self._fetch(tag, tag, accept))
                return self._served("manifest", tag, stored, "miss")
            async with asyncio.timeout(self._tag_timeout):
                head = await self.client.head_manifest(self.target.upstream_repo, tag, accept)
            if head.digest == cached.digest:
                await self._access.tag_confirmed(self.repo, tag)
                return self._served("manifest", tag, cached, "hit")
            try:
                stored = await self._single(tag, lambda: self._fetch(str(head.digest), tag, accept))
            except errors.ManifestUnknown as e:
                # The upstream named a digest for the tag that it then does not serve: its failure.
                raise errors.Unavailable(f"upstream {self.settings.name}: {self.target.upstream_repo}:{tag} "
                                         f"names {head.digest}, which it does not serve ({e.message})") from None
            return self._served("manifest", tag, stored, "miss")
        except _UNREACHABLE as e:
            if cached is None:
                raise _unavailable(e, self.settings.name) from None
            log.warning("upstream %s: %s:%s served stale from the cache (%s)", self.settings.name,
                        self.target.upstream_repo, tag, e or "timed out")
            return self._served("manifest", tag, cached, "stale")
        except errors.ManifestUnknown:
            if cached is not None and self.target.default:
                return self._served("manifest", tag, cached, "hit")  # pushed locally into the proxy's names
            raise

    async def _fetch(self, reference: str, tag: str | None, accept: Sequence[str]) -> StoredManifest:
        fetched = await self.client.get_manifest(self.target.upstream_repo, reference, accept)
        metrics.BYTES_FETCHED.labels(self.settings.name).inc(len(fetched.data))
        try:
            return await self.store.put_manifest(self.repo, tag or str(fetched.digest), fetched.data,
                                                 fetched.media_type, check_references=False)
        except (errors.ManifestInvalid, errors.DigestInvalid) as e:
            # What the upstream sent is no manifest (an HTML page with 200, say): its failure, not the client's.
            raise errors.Unavailable(
                f"upstream {self.settings.name}: what it sent for {self.target.upstream_repo}:{reference} "
                f"({fetched.media_type}, {len(fetched.data)} bytes) is not a usable manifest: {e.message}") from None

    async def _single(self, reference: str, fetch: Callable[[], Awaitable[StoredManifest]]) -> StoredManifest:
        """Concurrent requests for one manifest share one upstream request."""
        key = (self.repo, reference)
        flight = self._flights.get(key)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = asyncio.ensure_future(fetch())
        self._flights[key] = flight
        flight.add_done_callback(lambda _f: self._flights.pop(key, None))
        return await asyncio.shield(flight)

    def _served(self, kind: str, ref: str, stored: StoredManifest, result: str) -> StoredManifest:
        metrics.record(self.settings.name, kind, result)
        metrics.BYTES_SERVED.labels(self.settings.name).inc(stored.size)
        if result != "miss":
            metrics.BYTES_SAVED.labels(self.settings.name).inc(stored.size)
        self._access.manifest_pulled(self.repo, stored.digest)
        log.info("upstream %s: manifest %s:%s %s (%s, %d bytes)", self.settings.name, self.target.upstream_repo,
                 ref, result, stored.digest, stored.size)
        return stored

    # --- blobs ----------------------------------------------------------------------------------------
    async def stat_blob(self, d: Digest) -> BlobInfo:
        """The cached blob, or one being filled from the upstream right now (which a HEAD starts, too)."""
        for _ in range(3):
            try:
                info = await self.store.stat_blob(self.repo, d)
            except errors.BlobUnknown:
                pass
            else:
                self._blob_served(d, "hit", info.size)
                return info
            if await self.store.mount_blob(self.repo, d, None) is not None:
                continue  # the content is in the store already (pushed, or cached for another name)
            if self.settings.offline:
                raise errors.BlobUnknown(f"{d} is not cached and upstream {self.settings.name} is offline")
            try:
                source = await self.fills.open(self.client, self.target.upstream_repo, self.repo, d)
            except Exception as e:
                if is_committed(e):
                    continue
                raise
            self._blob_served(d, "miss", source.size)
            return FillingBlob(d, source.size, "", source)
        raise errors.Unavailable(f"{d} could not be served")

    def _blob_served(self, d: Digest, result: str, size: int) -> None:
        metrics.record(self.settings.name, "blob", result)
        self._access.blob_pulled(self.repo, d)
        log.info("upstream %s: blob %s %s %s (%d bytes)", self.settings.name, self.target.upstream_repo, d, result,
                 size)

    def local_path(self, info: BlobInfo) -> Path | None:
        if isinstance(info, FillingBlob):
            return None
        return self.store.local_path(info)

    async def read_blob(self, info: BlobInfo, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        remaining = info.size - offset if length is None else length
        filling = info.source if isinstance(info, FillingBlob) else None
        chunks = filling.chunks(offset, offset + remaining) if filling is not None \
            else self.store.read_blob(info, offset, length)
        served = metrics.BYTES_SERVED.labels(self.settings.name)
        saved = metrics.BYTES_SAVED.labels(self.settings.name)
        async for chunk in chunks:
            chunk = chunk[:remaining]
            remaining -= len(chunk)
            served.inc(len(chunk))
            if filling is None:
                saved.inc(len(chunk))
            yield chunk
            if remaining <= 0:
                break

    def count_sendfile(self, size: int) -> None:
        # Only a committed blob has a local file: these bytes came from the cache.
        metrics.BYTES_SERVED.labels(self.settings.name).inc(size)
        metrics.BYTES_SAVED.labels(self.settings.name).inc(size)

    # --- listings -------------------------------------------------------------------------------------
    async def tags(self) -> list[str]:
        """The upstream's tags, as Distribution's proxy answers; the cached ones when the upstream is offline,
        down or failing (logged as stale). Tags pushed here under the default upstream's names are added."""
        if self.settings.offline:
            return await self.store.tags(self.repo)
        try:
            upstream = await self.client.list_tags(self.target.upstream_repo)
        except _UNREACHABLE as e:
            log.warning("upstream %s: tags of %s served stale from the cache (%s)", self.settings.name,
                        self.target.upstream_repo, e or "timed out")
            metrics.record(self.settings.name, "tags", "stale")
            return await self.store.tags(self.repo)
        except errors.NameUnknown:
            if not self.target.default:
                raise
            upstream = []
        metrics.record(self.settings.name, "tags", "miss")
        if self.target.default:
            upstream += await self._cached_tags()
            if not upstream:
                raise errors.NameUnknown(f"repository {self.target.upstream_repo} is not known here or upstream")
        log.info("upstream %s: tags of %s listed (%d)", self.settings.name, self.target.upstream_repo, len(upstream))
        return sorted(set(upstream))

    async def _cached_tags(self) -> list[str]:
        try:
            return await self.store.tags(self.repo)
        except errors.NameUnknown:
            return []

    async def referrers(self, subject: Digest, artifact_type: str | None) -> list[Descriptor]:
        return await self.store.referrers(self.repo, subject, artifact_type)


def _unavailable(e: BaseException, name: str) -> errors.RegistryError:
    if isinstance(e, errors.RegistryError):
        return e
    return errors.Unavailable(f"upstream {name} did not answer in time")
