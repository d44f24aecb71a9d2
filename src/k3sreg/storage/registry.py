"""The async face of the store: each operation is one hop to a worker thread, except the read-only lookups
behind blob HEAD/GET and manifest GET, which run inline when the driver's reads are cheap (see `driver`).

Handlers see only `Registry` (and, later, the pull-through cache that implements the same methods), never
a driver. Request bodies arrive as async iterators of bytes; blob bodies leave as a local path (for
sendfile) or an async iterator.

This is also the storage boundary for failures: a full disk, a failing disk or a name too long for the file
system leave it as API errors (`driver.storage_error`), so the client gets an OCI error document.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.oci.manifest import Descriptor
from k3sreg.storage import catalog, paths, purge
from k3sreg.storage.blobs import Appender, BlobInfo, BlobStore
from k3sreg.storage.driver import Driver, storage_error
from k3sreg.storage.manifests import ManifestStore, StoredManifest

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


class Registry:
    """Local repositories: blobs, uploads, manifests, tags, referrers, catalog."""

    def __init__(self, driver: Driver, *, threads: int = 16, blob_limit: int = 0, session_wait: float = 10.0):
        """`session_wait`: how long a request waits for another one on the same upload session to finish
        before it answers UploadBusy (a PATCH holds its session while its body arrives)."""
        self.driver = driver
        self.session_wait = session_wait
        self.blobs = BlobStore(driver)
        self.manifests = ManifestStore(self.blobs)
        self.blob_limit = blob_limit
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="k3sreg-io")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking storage work in the store's threads (one hop per operation)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(_guarded, fn, *args))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- blobs ----------------------------------------------------------------------------------------
    async def lookup(self, fn: Callable[..., T], *args: Any) -> T:
        """A read-only lookup of a few small files: inline when the driver's reads are cheap, else one hop."""
        if self.driver.cheap_reads:
            return _guarded(fn, *args)
        return await self.run(fn, *args)

    async def stat_blob(self, repo: str, d: Digest) -> BlobInfo:
        return await self.lookup(self.blobs.stat, repo, d)

    def local_path(self, info: BlobInfo) -> Path | None:
        return self.driver.local_path(info.path)

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
        return await self.run(self.blobs.create_upload, repo, uuid)

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
        return await self._on_session(self.blobs.upload_size, repo, uuid)

    async def cancel_upload(self, repo: str, uuid: str) -> None:
        await self._on_session(self.blobs.cancel_upload, repo, uuid)

    async def append_upload(self, repo: str, uuid: str, body: AsyncIterator[bytes], start: int | None = None,
                            length: int | None = None) -> int:
        """Append a request body to an upload while hashing it; returns the new size.

        Three things overlap: receiving the next buffer (event loop), writing this one (a thread) and hashing
        it (another thread; both release the GIL). `length`, when given, is what the client announced: a body
        of another size is SIZE_INVALID and nothing of it is kept.
        """
        appender = await self._on_session(self.blobs.begin_append, repo, uuid, start, orphan=Appender.abort)
        begin = appender.size
        pending: asyncio.Future[tuple[None, None]] | None = None
        parts: list[bytes] = []
        buffered = 0
        received = 0

        def submit(batch: list[bytes]) -> asyncio.Future[tuple[None, None]]:
            return asyncio.gather(self.run(appender.write_parts, batch), self.run(appender.hash_parts, batch))

        try:
            async for chunk in body:
                received += len(chunk)
                if self.blob_limit and begin + received > self.blob_limit:
                    raise errors.TooLarge(f"blob exceeds the limit of {self.blob_limit} bytes")
                parts.append(chunk)
                buffered += len(chunk)
                if buffered >= _WRITE_BUFFER:
                    if pending is not None:
                        await pending
                    pending = submit(parts)
                    parts, buffered = [], 0
            if pending is not None:
                await pending
                pending = None
            if parts:
                await submit(parts)
            if length is not None and received != length:
                raise errors.SizeInvalid(f"received {received} bytes, Content-Length said {length}")
        except BaseException:
            if pending is not None:
                with contextlib.suppress(BaseException):
                    await pending
            # A failed chunk leaves the upload as it was before the request, and lets the session go.
            await asyncio.shield(self.run(appender.abort))
            raise
        # Not under the `except` above: a failed finish undoes the request itself, and a cancelled one still
        # runs to its end in its thread, which must not race an abort.
        return await self.run(appender.finish)

    async def commit_upload(self, repo: str, uuid: str, d: Digest) -> BlobInfo:
        return await self._on_session(self.blobs.commit_upload, repo, uuid, d)

    # --- manifests ------------------------------------------------------------------------------------
    async def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        return await self.lookup(self.manifests.get, repo, reference)

    async def get_manifest_by_digest(self, d: Digest) -> StoredManifest:
        return await self.run(self.manifests.load, d)

    async def put_manifest(self, repo: str, reference: str, data: bytes, content_type: str | None,
                           check_references: bool = True) -> StoredManifest:
        return await self.run(self.manifests.put, repo, reference, data, content_type, check_references)

    async def delete_manifest(self, repo: str, reference: str) -> None:
        await self.run(self.manifests.delete, repo, reference)

    async def tags(self, repo: str) -> list[str]:
        return await self.run(self.manifests.tags, repo)

    async def referrers(self, repo: str, subject: Digest, artifact_type: str | None) -> list[Descriptor]:
        return await self.run(self.manifests.referrers, repo, subject, artifact_type)

    async def purge_uploads(self, age: float, dry_run: bool) -> list[str]:
        return await self.run(purge.purge_uploads, self.driver, age, dry_run)

    async def catalog_root(self) -> None:
        """Touch the store (the storage health check); raises OSError when it does not answer."""
        await self.run(self.driver.list, paths.REPOSITORIES)

    async def probe_write(self) -> None:
        """Write a small object and remove it (the storage health check: readiness fails on a store that is
        read-only or full); raises OSError or the storage's API error when either fails."""
        probe = f"{paths.TMP}/health-{uuid.uuid4().hex}"

        def write_and_remove() -> None:
            self.driver.put_content(probe, b"k3sreg storage health probe\n")
            self.driver.delete(probe)

        await self.run(write_and_remove)

    async def catalog(self) -> list[str]:
        return await self.run(catalog.repositories, self.driver)


class Repository(Protocol):
    """The reads of one repository that handlers use; the pull-through cache implements them too."""

    async def get_manifest(self, reference: str, accept: Sequence[str]) -> StoredManifest: ...

    async def stat_blob(self, d: Digest) -> BlobInfo: ...

    def local_path(self, info: BlobInfo) -> Path | None: ...

    def read_blob(self, info: BlobInfo, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]: ...

    def count_sendfile(self, size: int) -> None: ...

    async def tags(self) -> list[str]: ...

    async def referrers(self, subject: Digest, artifact_type: str | None) -> list[Descriptor]: ...


class LocalRepository:
    """A local repository of `registry` seen through the Repository protocol."""

    def __init__(self, registry: Registry, name: str):
        self.registry, self.name = registry, name

    async def get_manifest(self, reference: str, accept: Sequence[str]) -> StoredManifest:
        return await self.registry.get_manifest(self.name, reference)

    async def stat_blob(self, d: Digest) -> BlobInfo:
        return await self.registry.stat_blob(self.name, d)

    def local_path(self, info: BlobInfo) -> Path | None:
        return self.registry.local_path(info)

    def read_blob(self, info: BlobInfo, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.registry.read_blob(info, offset, length)

    def count_sendfile(self, size: int) -> None:
        pass

    async def tags(self) -> list[str]:
        return await self.registry.tags(self.name)

    async def referrers(self, subject: Digest, artifact_type: str | None) -> list[Descriptor]:
        return await self.registry.referrers(self.name, subject, artifact_type)
