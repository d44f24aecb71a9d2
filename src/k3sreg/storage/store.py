"""The async face of storage: each operation is one hop to a worker thread, except the read-only lookups
behind blob HEAD/GET and manifest GET, which run inline when the driver's reads are cheap (see `driver`).

Handlers see only `Store` (through `repository.Repository`, which the pull-through cache implements too),
never a driver. Request bodies arrive as async iterators of bytes; blob bodies leave as a local path (for
sendfile) or an async iterator. The pull-through cache builds on the same store: fill staging (`fills`),
the access clock (`access`) and the inventory that eviction sweeps (`inventory`).

This is also the storage boundary for failures: a full disk, a failing disk or a name too long for the file
system leave it as API errors (`driver.storage_error`), so the client gets an OCI error document.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.oci.manifest import Descriptor
from k3sreg.storage import catalog, paths, purge
from k3sreg.storage.blobs import BlobInfo, BlobStore
from k3sreg.storage.blobwriter import feed
from k3sreg.storage.driver import Driver, LocalFiles, Lock, LockService, PathNotFound, storage_error
from k3sreg.storage.fills import FileFillStaging, FillStaging
from k3sreg.storage.inventory import Inventory
from k3sreg.storage.manifests import ManifestStore, StoredManifest
from k3sreg.storage.uploads import Appender, UploadSessions

T = TypeVar("T")
_WRITE_BUFFER = 4 << 20
_BUSY_POLL = 0.005, 0.1  # first and longest pause between attempts to take a busy upload session


def _guarded(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, with the storage failures a client should hear about raised as API errors."""
    try:
        return fn(*args)
    except OSError as e:
        mapped = storage_error(e)
        if mapped is None:
            raise
        raise mapped from e


class Store:
    """Local repositories: blobs, uploads, manifests, tags, referrers, catalog. `locks` (upload sessions,
    fills, eviction) defaults to the driver's own LockService."""

    def __init__(self, driver: Driver, *, threads: int = 16, blob_limit: int = 0, session_wait: float = 10.0,
                 locks: LockService | None = None):
        """`session_wait`: how long a request waits for another one on the same upload session to finish
        before it answers UploadBusy (a PATCH holds its session while its body arrives)."""
        self.driver = driver
        self.session_wait = session_wait
        self.blobs = BlobStore(driver, locks)
        self.uploads = UploadSessions(self.blobs, locks)
        self.manifests = ManifestStore(self.blobs)
        self.blob_limit = blob_limit
        self.local_files = driver if isinstance(driver, LocalFiles) else None
        self._fills: FillStaging | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="k3sreg-io")
        self._spawned: set[asyncio.Future[Any]] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking storage work in the store's threads (one hop per operation)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(_guarded, fn, *args))

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` in the store's threads without waiting for it (kept referenced until it is done)."""
        task = asyncio.ensure_future(self.run(fn, *args))
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def lookup(self, fn: Callable[..., T], *args: Any) -> T:
        """A read-only lookup of a few small files: inline when the driver's reads are cheap, else one hop."""
        if self.driver.cheap_reads:
            return _guarded(fn, *args)
        return await self.run(fn, *args)

    # --- blobs ----------------------------------------------------------------------------------------
    async def stat_blob(self, repo: str, d: Digest) -> BlobInfo:
        return await self.lookup(self.blobs.stat, repo, d)

    def local_path(self, info: BlobInfo) -> Path | None:
        """The local file of a blob, for sendfile; None when the driver has no local files."""
        return self.local_files.local_path(info.path) if self.local_files is not None else None

    async def read_blob(self, info: BlobInfo, offset: int = 0, length: int | None = None,
                        chunk: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream a blob from a driver without local files."""
        f = await self.run(self.driver.reader, info.path, offset)
        remaining = info.size - offset if length is None else length
        try:
            while remaining > 0:
                data = await self.run(f.read, min(chunk, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
        finally:
            await self.run(f.close)

    async def delete_blob(self, repo: str, d: Digest) -> None:
        await self.run(self.blobs.delete, repo, d)

    async def mount_blob(self, repo: str, d: Digest, source: str | None) -> BlobInfo | None:
        return await self.run(self.blobs.mount, repo, d, source)

    # --- uploads --------------------------------------------------------------------------------------
    async def create_upload(self, repo: str, uuid: str | None = None) -> str:
        return await self.run(self.uploads.create, repo, uuid)

    async def _on_session(self, fn: Callable[..., T], *args: Any, orphan: Callable[[T], None] | None = None) -> T:
        """Run an operation on an upload session, waiting up to `session_wait` while another request has it.

        Polling, not a blocking lock: a waiter holds no thread, and the holder may be in another process. A
        caller cancelled while the operation runs in its thread does not stop it: `orphan` then receives what
        it returns (an Appender holding the session must let it go)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.session_wait
        pause, longest = _BUSY_POLL
        while True:
            attempt = asyncio.ensure_future(self.run(fn, *args))
            try:
                return await asyncio.shield(attempt)
            except errors.UploadBusy:
                if loop.time() + pause > deadline:
                    raise
            except asyncio.CancelledError:
                if orphan is not None:
                    attempt.add_done_callback(functools.partial(self._orphaned, orphan))
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)

    def _orphaned(self, orphan: Callable[[T], None], attempt: asyncio.Future[T]) -> None:
        if attempt.cancelled() or attempt.exception() is not None:
            return
        try:
            attempt.get_loop().run_in_executor(self._pool, orphan, attempt.result())
        except RuntimeError:  # the pool is shut down: the process is closing
            orphan(attempt.result())

    async def upload_size(self, repo: str, uuid: str) -> int:
        return await self._on_session(self.uploads.size, repo, uuid)

    async def cancel_upload(self, repo: str, uuid: str) -> None:
        await self._on_session(self.uploads.cancel, repo, uuid)

    async def append_upload(self, repo: str, uuid: str, body: AsyncIterator[bytes], start: int | None = None,
                            length: int | None = None) -> int:
        """Append a request body to an upload while hashing it (`blobwriter.feed`); returns the new size.

        `length`, when given, is what the client announced: a body of another size is SIZE_INVALID and nothing
        of it is kept.
        """
        appender = await self._on_session(self.uploads.begin_append, repo, uuid, start, orphan=Appender.abort)
        try:
            received = await feed(self.run, body, appender.writer, buffer=_WRITE_BUFFER, limit=self.blob_limit)
            if length is not None and received != length:
                raise errors.SizeInvalid(f"received {received} bytes, Content-Length said {length}")
        except BaseException:
            # A failed chunk leaves the upload as it was before the request, and lets the session go.
            await asyncio.shield(self.run(appender.abort))
            raise
        # Not under the `except` above: a failed finish undoes the request itself, and a cancelled one still
        # runs to its end in its thread, which must not race an abort.
        return await self.run(appender.finish)

    async def commit_upload(self, repo: str, uuid: str, d: Digest) -> BlobInfo:
        return await self._on_session(self.uploads.commit, repo, uuid, d)

    # --- manifests and tags ---------------------------------------------------------------------------
    async def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        return await self.lookup(self.manifests.get, repo, reference)

    async def put_manifest(self, repo: str, reference: str, data: bytes, content_type: str | None,
                           check_references: bool = True) -> StoredManifest:
        return await self.run(self.manifests.put, repo, reference, data, content_type, check_references)

    async def delete_manifest(self, repo: str, reference: str) -> None:
        await self.run(self.manifests.delete, repo, reference)

    async def tags(self, repo: str) -> list[str]:
        return await self.run(self.manifests.tags.list, repo)

    async def tag_checked_at(self, repo: str, tag: str) -> float | None:
        """When the cache last confirmed `tag` upstream (see `access.AccessClock.tag_confirmed`)."""
        return await self.run(self.manifests.tags.checked_at, repo, tag)

    async def referrers(self, repo: str, subject: Digest, artifact_type: str | None) -> list[Descriptor]:
        return await self.run(self.manifests.referrers, repo, subject, artifact_type)

    # --- the whole store ------------------------------------------------------------------------------
    async def purge_uploads(self, age: float, dry_run: bool) -> list[str]:
        return await self.run(purge.purge_uploads, self.driver, age, dry_run, None, self.uploads.locks)

    async def catalog_root(self) -> None:
        """Touch the store (the storage health check); raises OSError when it does not answer."""
        await self.run(self.driver.list, paths.REPOSITORIES)

    async def probe_write(self) -> None:
        """Write a small object and remove it (the storage health check: readiness fails on a store that is
        read-only or full); raises OSError or the storage's API error when either fails."""
        probe = paths.health_probe(uuid.uuid4().hex)

        def write_and_remove() -> None:
            self.driver.put_content(probe, b"k3sreg storage health probe\n")
            self.driver.delete(probe)

        await self.run(write_and_remove)

    async def catalog(self) -> list[str]:
        return await self.run(catalog.repositories, self.driver)

    # --- what the pull-through cache builds on ---------------------------------------------------------
    def fill_staging(self) -> FillStaging:
        """Where fills stage their bytes, shared with the other processes on this storage; ConfigError for a
        store that cannot stage fills."""
        if self._fills is None:
            self._fills = FileFillStaging(self.blobs, self.uploads.locks)
        return self._fills

    def inventory(self) -> Inventory:
        """The view eviction sweeps through (synchronous: run it in one of the store's threads)."""
        return Inventory(self.manifests)

    async def claim_eviction(self) -> Lock | None:
        """The lock that lets one worker at a time evict; None while another holds it."""
        self.fill_staging()  # its directory holds the lock
        try:
            return await self.run(self.uploads.locks.try_lock, paths.EVICT_LOCK)
        except PathNotFound:
            return None
