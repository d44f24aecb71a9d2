"""One upstream fetch per blob, however many clients and worker processes ask at once.

    client A ─┐                     ┌─ leader task (detached from every client) ──► upstream GET
    client B ─┼─► follow(partial) ◄─┤    writes _fills/<hex>.partial, hashes, then verifies and renames
    client C ─┘   (read what is     │    it into blobs/… and links it into the cache repository
                   there, wait for  └─ other worker processes: flock(_fills/<hex>.lock) fails, so they
                   more)               follow the same .partial file by polling its size
                                       (the files of a fill: see `fillfiles`)

Followers send bytes as they arrive, before the download ends, except the bytes that end their answer: those
wait until the leader has checked the digest of the whole blob, so that no client can take wrong bytes for a
complete blob (a client whose transfer is cut retries; one given a complete answer does not). The leader
renames the checked file to `<hex>.verified`, which is how followers in other processes learn the verdict,
then commits it. The leader does not depend on any client: a client that disconnects stops only its own
response. A download cut half-way continues with a Range from the bytes already written (up to the upstream's
`retries` times), unseen by the followers. One that still fails, or whose bytes do not match the digest,
leaves nothing in the cache; every follower gets an error (a cut connection once headers were sent) and the
next request starts anew.
Renaming the file keeps its inode, so followers that opened the partial file read on undisturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from k3sreg import errors
from k3sreg.client.registry import RegistryClient
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.registry import Registry
from k3sreg.upstream.fillfiles import FillFiles, pread, try_lock, write

log = logging.getLogger("k3sreg.upstream")
FILLS = f"{paths.V2}/_fills"
_BUFFER = 1 << 20
_POLL = 0.02
_RECENT = 8
_SIZE_WAIT = 30.0
_ATTEMPTS = 3


@dataclass(eq=False)
class Fill:
    """An in-process download: followers read `written` bytes of its file and wait on `changed`."""

    digest: Digest
    files: FillFiles
    size: int | None = None
    written: int = 0
    verified: bool = False  # every byte is in and matches the digest: the final bytes may go out
    error: BaseException | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # cleaned up and the lock let go
    # The last buffers written, (offset, bytes): followers that keep up are fed from memory, not the file.
    recent: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=_RECENT))

    def from_memory(self, offset: int) -> bytes | None:
        # Followers move buffer by buffer, so the slice (a copy) is needed only for a Range start.
        for start, data in self.recent:
            if start <= offset < start + len(data):
                return data[offset - start:] if offset > start else data
        return None

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass(frozen=True, slots=True)
class Source:
    """A blob being served while it fills: `size` for Content-Length, and `chunks(offset, end)` for the bytes
    from `offset` up to `end`; the chunk that reaches `end` comes only once the whole blob matched its digest
    (or the iterator raises)."""

    size: int
    chunks: Callable[[int, int], AsyncIterator[bytes]]


class FillCoordinator:
    """Single-flight blob fills into `registry` (filesystem driver: shared with other worker processes)."""

    def __init__(self, registry: Registry, on_fetched: Callable[[str, int], None] | None = None):
        self.registry = registry
        root = registry.driver.local_path(FILLS)
        if root is None:
            raise errors.ConfigError(["the pull-through cache needs the filesystem storage driver"])
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._fills: dict[Digest, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_fetched = on_fetched or (lambda _upstream, _n: None)

    async def open(self, client: RegistryClient, upstream_repo: str, cache_repo: str, d: Digest) -> Source:
        """Serve `d`: follow a running fill, or become the leader of a new one. A request that arrives after a
        fill failed, while it is still being cleaned up, waits for that and then starts a new fill."""
        for _ in range(_ATTEMPTS):
            fill = self._fills.get(d)
            if fill is not None and fill.error is not None:
                await fill.finished.wait()
                continue
            if fill is None:
                lock = await self.registry.run(try_lock, self._files(d).lock)
                if lock is None:
                    source = await self._follow_other_process(d)
                    if source is None:
                        continue
                    return source
                if await self.registry.run(self.registry.blobs.stat_global, d) is not None:
                    lock.close()  # finished a moment ago by another process
                    raise _Committed()
                fill = Fill(d, self._files(d))
                self._fills[d] = fill
                task = asyncio.create_task(self._lead(fill, lock, client, upstream_repo, cache_repo))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await fill.started.wait()
            if fill.error is not None:
                raise _as_registry_error(fill.error)
            assert fill.size is not None
            return Source(fill.size, functools.partial(self._follow, fill))
        raise errors.Unavailable(f"the download of {d} failed {_ATTEMPTS} times while this request waited")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    # --- the leader -----------------------------------------------------------------------------------
    async def _lead(self, fill: Fill, lock: BinaryIO, client: RegistryClient, upstream_repo: str,
                    cache_repo: str) -> None:
        hasher = hashlib.new(fill.digest.algorithm)
        out: BinaryIO | None = None
        resumes = 0
        try:
            while True:
                try:
                    async with client.open_blob(upstream_repo, fill.digest, fill.written) as stream:
                        if out is None:
                            if stream.size is None:
                                raise errors.Unavailable(
                                    f"{client.name} sent blob {fill.digest} without a Content-Length")
                            if stream.size == 0 and Digest.of(b"", fill.digest.algorithm) != fill.digest:
                                # An empty answer is complete as soon as its headers are out: refuse it first.
                                raise errors.Unavailable(f"upstream {client.name} sent an empty body for blob "
                                                         f"{fill.digest}")
                            fill.size = stream.size
                            out = await self.registry.run(fill.files.create, stream.size)
                            fill.started.set()
                        elif stream.size != fill.size:
                            raise errors.Unavailable(f"{client.name} changed the size of {fill.digest} "
                                                     f"from {fill.size} to {stream.size} while resuming")
                        await self._pump(stream, out, hasher, fill)
                    break
                except errors.Unavailable as e:
                    # A cut once the download had started: ask for the rest with a Range (as many times as
                    # `retries` allows); the followers keep being fed from the same partial file.
                    if out is None or resumes >= client.settings.retries:
                        if resumes:
                            raise errors.Unavailable(f"{e.message} (after {resumes} resume{'s' * (resumes > 1)} "
                                                     "with a Range)") from e
                        raise
                    resumes += 1
                    log.info("upstream %s: download of %s %s cut at %d of %d bytes (%s); resuming",
                             client.name, upstream_repo, fill.digest, fill.written, fill.size, e)
            if fill.written != fill.size:
                raise errors.Unavailable(f"{client.name} sent {fill.written} of {fill.size} bytes of {fill.digest}")
            if hasher.hexdigest() != fill.digest.hex:
                raise errors.Unavailable(f"upstream {client.name}: the {fill.written} bytes it sent for "
                                         f"{upstream_repo} blob {fill.digest} do not match that digest "
                                         f"({fill.digest.algorithm}:{hasher.hexdigest()})")
            await self.registry.run(os.replace, fill.files.partial, fill.files.verified)
            fill.verified = True
            fill.notify()
            await self.registry.run(self._commit, out, fill, cache_repo)
            out = None
            self._on_fetched(client.name, fill.written)
            log.info("upstream %s: fetched %s %s (%d bytes)", client.name, upstream_repo, fill.digest, fill.written)
        except BaseException as e:
            fill.error = e
            # Every request this fill fails reports the error itself: one line per request, not one more here.
            log.debug("upstream %s: fetch of %s %s failed: %s", client.name, upstream_repo, fill.digest, e)
            await asyncio.shield(self.registry.run(fill.files.discard, out))
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            self._fills.pop(fill.digest, None)
            fill.started.set()
            fill.notify()
            lock.close()  # after the rename or the removal, so other processes see the outcome
            fill.finished.set()

    async def _pump(self, stream: AsyncIterable[bytes], out: BinaryIO, hasher: hashlib._Hash, fill: Fill) -> None:
        """Copy the upstream body to the partial file. Receiving the next buffer overlaps with writing and
        hashing this one (two threads: both release the GIL); followers see bytes once they are in the file."""
        pending: asyncio.Future[tuple[None, None]] | None = None
        pending_data = b""

        async def settle() -> None:
            nonlocal pending
            if pending is not None:
                await pending
                pending = None
                fill.recent.append((fill.written, pending_data))
                fill.written += len(pending_data)
                fill.notify()

        def submit(data: bytes) -> None:
            nonlocal pending, pending_data
            pending, pending_data = asyncio.gather(self.registry.run(write, out, data),
                                                   self.registry.run(hasher.update, data)), data

        parts: list[bytes] = []
        size = 0
        try:
            try:
                async for chunk in stream:
                    parts.append(chunk)
                    size += len(chunk)
                    if size >= _BUFFER:
                        await settle()
                        submit(b"".join(parts))  # one copy; a growing bytearray would copy twice
                        parts, size = [], 0
            except errors.Unavailable:
                # Cut: keep what did arrive, so a resumed download continues right after it.
                await settle()
                if parts:
                    submit(b"".join(parts))
                    await settle()
                raise
            await settle()
            if parts:
                submit(b"".join(parts))
                await settle()
        finally:
            if pending is not None:  # a failure mid-way: let the threads finish before the file is closed
                with contextlib.suppress(BaseException):
                    await pending

    def _commit(self, out: BinaryIO, fill: Fill, cache_repo: str) -> None:
        out.flush()
        os.fsync(out.fileno())
        out.close()
        self.registry.blobs.adopt(f"{FILLS}/{fill.files.verified.name}", fill.digest, fill.written)
        self.registry.blobs.link(cache_repo, fill.digest)
        self.registry.driver.delete(f"{FILLS}/{fill.files.size.name}")

    # --- followers ------------------------------------------------------------------------------------
    async def _follow(self, fill: Fill, offset: int, end: int) -> AsyncIterator[bytes]:
        try:
            f = await self.registry.run(fill.files.open)
        except FileNotFoundError:
            raise _as_registry_error(fill.error or errors.Unavailable(f"the download of {fill.digest} failed")
                                     ) from None
        try:
            while offset < end:
                changed = fill.changed
                if fill.error is not None and not fill.verified:
                    raise _as_registry_error(fill.error)
                if offset >= fill.written:
                    await changed.wait()
                    continue
                data = fill.from_memory(offset)
                if data is None:
                    data = await self.registry.run(pread, f, offset, min(fill.written - offset, _BUFFER))
                if offset + len(data) >= end:
                    data = data[:end - offset]
                    while not fill.verified:  # the final bytes of this answer wait for the digest check
                        if fill.error is not None:
                            raise _as_registry_error(fill.error)
                        await fill.changed.wait()
                offset += len(data)
                yield data
        finally:
            await self.registry.run(f.close)

    async def _follow_other_process(self, d: Digest) -> Source | None:
        """Tail the fill another process leads; None when that fill ended without the blob (start anew)."""
        files = self._files(d)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SIZE_WAIT
        while True:
            if d in self._fills:
                return None  # it was this process that took the lock a moment ago: follow that fill instead
            size = await self.registry.run(files.read_size)
            if size is not None:
                break
            lock_free = await self.registry.run(files.lock_free)
            if await self.registry.run(self.registry.blobs.stat_global, d) is not None:
                raise _Committed()
            if lock_free:
                return None
            if loop.time() > deadline:
                raise errors.Unavailable(f"the download of {d} in another worker did not start")
            await asyncio.sleep(_POLL)
        if d in self._fills:
            return None
        return Source(size, functools.partial(self._tail, d, files))

    async def _tail(self, d: Digest, files: FillFiles, offset: int, end: int) -> AsyncIterator[bytes]:
        try:
            f = await self.registry.run(files.open)
        except FileNotFoundError:
            raise errors.Unavailable(f"the download of {d} failed in another worker") from None
        try:
            while offset < end:
                data = await self.registry.run(pread, f, offset, min(end - offset, _BUFFER))
                if data and offset + len(data) < end:
                    offset += len(data)
                    yield data
                    continue
                # The bytes that end this answer wait for the leader's verdict, as do we when no new bytes came.
                verdict = await self.registry.run(files.verdict, f)
                while data and verdict is None:
                    await asyncio.sleep(_POLL)
                    verdict = await self.registry.run(files.verdict, f)
                if verdict is False:
                    raise errors.Unavailable(f"the download of {d} failed in another worker")
                if data:
                    offset += len(data)
                    yield data
                elif verdict is None:
                    await asyncio.sleep(_POLL)
        finally:
            await self.registry.run(f.close)

    def _files(self, d: Digest) -> FillFiles:
        blob = self.registry.driver.local_path(paths.blob_data(d))
        assert blob is not None
        return FillFiles(self.root, d.hex, blob)


class _Committed(Exception):
    """The blob reached the store while we looked: serve it from there."""


def is_committed(e: BaseException) -> bool:
    return isinstance(e, _Committed)


def _as_registry_error(e: BaseException) -> errors.RegistryError:
    if isinstance(e, errors.RegistryError):
        return e
    return errors.Unavailable(f"upstream fetch failed: {e or type(e).__name__}")
