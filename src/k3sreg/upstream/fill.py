"""One upstream fetch per blob, however many clients and worker processes ask at once.

    client A ─┐                     ┌─ leader task (detached from every client) ──► upstream GET
    client B ─┼─► follow(partial) ◄─┤    writes _fills/<hex>.partial, hashes, then verifies and renames
    client C ─┘   (read what is     │    it into blobs/… and links it into the cache repository
                   there, wait for  └─ other worker processes: flock(_fills/<hex>.lock) fails, so they
                   more)               follow the same .partial file by polling its size

Followers send bytes as they arrive, before the download ends. The leader does not depend on any client: a
client that disconnects stops only its own response. A download cut half-way continues with a Range from the
bytes already written (up to the upstream's `retries` times), unseen by the followers. One that still fails
leaves nothing in the cache; every follower gets an error (a cut connection once headers were sent) and the
next request starts anew.
Renaming the finished file keeps its inode, so followers that opened the partial file read on undisturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.registry import Registry
from k3sreg.upstream.client import UpstreamClient

log = logging.getLogger("k3sreg.upstream")
FILLS = f"{paths.V2}/_fills"
_BUFFER = 1 << 20
_POLL = 0.02
_RECENT = 8
_SIZE_WAIT = 30.0
_ATTEMPTS = 3


@dataclass(eq=False)
class Fill:
    """An in-process download: followers read `written` bytes of `partial` and wait on `changed`."""

    digest: Digest
    partial: Path
    size: int | None = None
    written: int = 0
    done: bool = False
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
    """A blob being served while it fills: `size` for Content-Length and the chunks from `offset` on."""

    size: int
    chunks: Callable[[int], AsyncIterator[bytes]]


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

    async def open(self, client: UpstreamClient, upstream_repo: str, cache_repo: str, d: Digest) -> Source:
        """Serve `d`: follow a running fill, or become the leader of a new one. A request that arrives after a
        fill failed, while it is still being cleaned up, waits for that and then starts a new fill."""
        for _ in range(_ATTEMPTS):
            fill = self._fills.get(d)
            if fill is not None and fill.error is not None:
                await fill.finished.wait()
                continue
            if fill is None:
                lock = await self.registry.run(try_lock, self.root / f"{d.hex}.lock")
                if lock is None:
                    source = await self._follow_other_process(d)
                    if source is None:
                        continue
                    return source
                if await self.registry.run(self.registry.blobs.stat_global, d) is not None:
                    lock.close()  # finished a moment ago by another process
                    raise _Committed()
                fill = Fill(d, self.root / f"{d.hex}.partial")
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
    async def _lead(self, fill: Fill, lock: BinaryIO, client: UpstreamClient, upstream_repo: str,
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
                            fill.size = stream.size
                            out = await self.registry.run(_create, fill.partial,
                                                          self.root / f"{fill.digest.hex}.size", stream.size)
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
                        raise
                    resumes += 1
                    log.warning("upstream %s: download of %s %s cut at %d of %d bytes (%s); resuming",
                                client.name, upstream_repo, fill.digest, fill.written, fill.size, e)
            if fill.written != fill.size:
                raise errors.Unavailable(f"{client.name} sent {fill.written} of {fill.size} bytes of {fill.digest}")
            if hasher.hexdigest() != fill.digest.hex:
                raise errors.Unavailable(f"{client.name} sent content that does not match {fill.digest}")
            await self.registry.run(self._commit, out, fill, cache_repo)
            out = None
            fill.done = True
            self._on_fetched(client.name, fill.written)
            log.info("upstream %s: fetched %s %s (%d bytes)", client.name, upstream_repo, fill.digest, fill.written)
        except BaseException as e:
            fill.error = e
            log.warning("upstream %s: fetch of %s %s failed: %s", client.name, upstream_repo, fill.digest, e)
            await asyncio.shield(self.registry.run(_discard, out, fill.partial))
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
            pending, pending_data = asyncio.gather(self.registry.run(_write, out, data),
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
        self.registry.blobs.adopt(f"{FILLS}/{fill.digest.hex}.partial", fill.digest, fill.written)
        self.registry.blobs.link(cache_repo, fill.digest)
        self.registry.driver.delete(f"{FILLS}/{fill.digest.hex}.size")

    # --- followers ------------------------------------------------------------------------------------
    async def _follow(self, fill: Fill, offset: int) -> AsyncIterator[bytes]:
        try:
            f = await self.registry.run(_open_either, fill.partial, self._blob_path(fill.digest))
        except FileNotFoundError:
            raise _as_registry_error(fill.error or errors.Unavailable(f"the download of {fill.digest} failed")
                                     ) from None
        try:
            while True:
                changed = fill.changed
                if offset < fill.written:
                    data = fill.from_memory(offset)
                    if data is None:
                        data = await self.registry.run(_pread, f, offset, min(fill.written - offset, _BUFFER))
                    offset += len(data)
                    yield data
                    continue
                if fill.error is not None:
                    raise _as_registry_error(fill.error)
                if fill.done:
                    return
                await changed.wait()
        finally:
            await self.registry.run(f.close)

    async def _follow_other_process(self, d: Digest) -> Source | None:
        """Tail the fill another process leads; None when that fill ended without the blob (start anew)."""
        size_file, partial = self.root / f"{d.hex}.size", self.root / f"{d.hex}.partial"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SIZE_WAIT
        while True:
            size = await self.registry.run(_read_size, size_file)
            if size is not None:
                break
            lock_free = await self.registry.run(_lock_free, self.root / f"{d.hex}.lock")
            if await self.registry.run(self.registry.blobs.stat_global, d) is not None:
                raise _Committed()
            if lock_free:
                return None
            if loop.time() > deadline:
                raise errors.Unavailable(f"the download of {d} in another worker did not start")
            await asyncio.sleep(_POLL)
        return Source(size, lambda offset: self._tail(d, partial, size, offset))

    async def _tail(self, d: Digest, partial: Path, size: int, offset: int) -> AsyncIterator[bytes]:
        f = await self.registry.run(_open_either, partial, self._blob_path(d))
        try:
            while offset < size:
                data = await self.registry.run(_pread, f, offset, min(size - offset, _BUFFER))
                if data:
                    offset += len(data)
                    yield data
                    continue
                # The leader commits before it lets go of the lock: ask about the lock first, then the store,
                # or a commit between the two questions would look like a failure.
                if await self.registry.run(_lock_free, self.root / f"{d.hex}.lock") and \
                        await self.registry.run(self.registry.blobs.stat_global, d) is None:
                    raise errors.Unavailable(f"the download of {d} failed in another worker")
                await asyncio.sleep(_POLL)
        finally:
            await self.registry.run(f.close)

    def _blob_path(self, d: Digest) -> Path:
        local = self.registry.driver.local_path(paths.blob_data(d))
        assert local is not None
        return local


class _Committed(Exception):
    """The blob reached the store while we looked: serve it from there."""


def is_committed(e: BaseException) -> bool:
    return isinstance(e, _Committed)


def _as_registry_error(e: BaseException) -> errors.RegistryError:
    if isinstance(e, errors.RegistryError):
        return e
    return errors.Unavailable(f"upstream fetch failed: {e or type(e).__name__}")


# --- blocking helpers, each run in a worker thread ---------------------------------------------------------
def try_lock(path: Path) -> BinaryIO | None:
    f = path.open("ab")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _lock_free(path: Path) -> bool:
    lock = try_lock(path)
    if lock is None:
        return False
    lock.close()
    return True


def _create(partial: Path, size_file: Path, size: int) -> BinaryIO:
    out = partial.open("wb")
    tmp = size_file.with_suffix(".size-tmp")
    tmp.write_text(str(size))
    tmp.replace(size_file)
    return out


def _write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()  # followers read the file, not our buffer


def _discard(out: BinaryIO | None, partial: Path) -> None:
    # The size file first: a request in another process that finds no size file waits for the lock and then
    # starts a new fill, instead of tailing this doomed one.
    partial.with_suffix(".size").unlink(missing_ok=True)
    if out is not None:
        out.close()
    partial.unlink(missing_ok=True)


def _open_either(partial: Path, final: Path) -> BinaryIO:
    try:
        return partial.open("rb")
    except FileNotFoundError:
        return final.open("rb")


def _pread(f: BinaryIO, offset: int, n: int) -> bytes:
    return os.pread(f.fileno(), n, offset)


def _read_size(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
