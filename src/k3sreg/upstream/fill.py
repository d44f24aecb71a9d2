"""One upstream fetch per blob, however many clients and worker processes ask at once.

    client A ─┐                     ┌─ leader task (detached from every client) ──► upstream GET
    client B ─┼─► follow(staged) ◄──┤    stages the bytes (storage.fills), hashes them, then seals
    client C ─┘   (read what is     │    and commits them as the blob, linked into the cache repository
                   there, wait for  └─ other worker processes: their claim on the fill fails, so they
                   more)               follow the same staged bytes as they grow

Followers send bytes as they arrive, before the download ends, except the bytes that end their answer: those
wait until the leader has checked the digest of the whole blob, so that no client can take wrong bytes for a
complete blob (a client whose transfer is cut retries; one given a complete answer does not). The leader
seals the checked bytes, which is how followers in other processes learn the verdict, then commits them.
The leader does not depend on any client: a client that disconnects stops only its own response. A download
cut half-way continues with a Range from the bytes already written (up to the upstream's `retries` times),
unseen by the followers. One that still fails, or whose bytes do not match the digest, leaves nothing in the
cache; every follower gets an error (a cut connection once headers were sent) and the next request starts
anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from k3sreg import errors
from k3sreg.client.registry import RegistryClient
from k3sreg.oci.digest import Digest
from k3sreg.storage.blobwriter import feed
from k3sreg.storage.fills import Claim, StagedFill
from k3sreg.storage.store import Store
from k3sreg.upstream import metrics

log = logging.getLogger("k3sreg.upstream")
_BUFFER = 1 << 20
_POLL = 0.02
_RECENT = 8
_SIZE_WAIT = 30.0
_ATTEMPTS = 3


@dataclass(eq=False)
class Fill:
    """An in-process download: followers read `written` bytes of its staged file and wait on `changed`."""

    digest: Digest
    size: int | None = None
    written: int = 0
    verified: bool = False  # every byte is in and matches the digest: the final bytes may go out
    error: BaseException | None = None
    staged: StagedFill | None = None  # from the upstream's first answer on
    resumes: int = 0  # downloads continued with a Range after a cut
    started: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # cleaned up and the claim let go
    # The last buffers written, (offset, bytes): followers that keep up are fed from memory, not the file.
    recent: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=_RECENT))

    def from_memory(self, offset: int) -> bytes | None:
        # Followers move buffer by buffer, so the slice (a copy) is needed only for a Range start.
        for start, data in self.recent:
            if start <= offset < start + len(data):
                return data[offset - start:] if offset > start else data
        return None

    def arrived(self, batch: list[bytes]) -> None:
        """`batch` is in the staged file: followers may read it."""
        for data in batch:
            self.recent.append((self.written, data))
            self.written += len(data)
        self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Answer(AsyncIterable[bytes], Protocol):
    """What a fill uses of an upstream's answer (`client.BlobStream`): the blob's size and its bytes."""

    size: int | None


@dataclass(frozen=True, slots=True)
class Source:
    """A blob being served while it fills: `size` for Content-Length, and `chunks(offset, end)` for the bytes
    from `offset` up to `end`; the chunk that reaches `end` comes only once the whole blob matched its digest
    (or the iterator raises)."""

    size: int
    chunks: Callable[[int, int], AsyncIterator[bytes]]


class FillCoordinator:
    """Single-flight blob fills into `store`, staged where the other worker processes can follow them."""

    def __init__(self, store: Store, on_fetched: Callable[[str, int], None] | None = None):
        self.store = store
        self.staging = store.fill_staging()
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
                claim = await self.store.run(self.staging.claim, d)
                if claim is None:
                    source = await self._follow_other_process(d)
                    if source is None:
                        continue
                    return source
                if await self.store.run(self.staging.committed, d):
                    claim.release()  # finished a moment ago by another process
                    raise _Committed()
                fill = Fill(d)
                self._fills[d] = fill
                task = asyncio.create_task(self._lead(fill, claim, client, upstream_repo, cache_repo))
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
    async def _lead(self, fill: Fill, claim: Claim, client: RegistryClient, upstream_repo: str,
                    cache_repo: str) -> None:
        """Download, check and commit the blob, detached from every client; on failure leave nothing behind
        and hand the error to every follower. The claim goes last, so other processes see the outcome."""
        in_progress = metrics.FILLS.labels(client.name)
        in_progress.inc()
        try:
            await self._download(fill, client, upstream_repo)
            await self._seal(fill, client, upstream_repo)
            assert fill.staged is not None
            await self.store.run(fill.staged.commit, cache_repo)
            self._on_fetched(client.name, fill.written)
            log.info("upstream %s: fetched %s %s (%d bytes)", client.name, upstream_repo, fill.digest, fill.written)
        except BaseException as e:
            fill.error = e
            # Every request this fill fails reports the error itself: one line per request, not one more here.
            log.debug("upstream %s: fetch of %s %s failed: %s", client.name, upstream_repo, fill.digest, e)
            await asyncio.shield(self.store.run(self.staging.discard, fill.digest, fill.staged))
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            in_progress.dec()
            self._fills.pop(fill.digest, None)
            fill.started.set()
            fill.notify()
            claim.release()
            fill.finished.set()

    async def _download(self, fill: Fill, client: RegistryClient, upstream_repo: str) -> None:
        """Every byte of the blob into the staging. A cut once the download had started asks for the rest with
        a Range (as many times as `retries` allows); the followers keep being fed from the same staged file."""
        while True:
            try:
                async with client.open_blob(upstream_repo, fill.digest, fill.written) as stream:
                    await self._receive(fill, client, stream)
                return
            except errors.Unavailable as e:
                if fill.staged is None or fill.resumes >= client.settings.retries:
                    if fill.resumes:
                        raise errors.Unavailable(f"{e.message} (after {fill.resumes} resume"
                                                 f"{'s' * (fill.resumes > 1)} with a Range)") from e
                    raise
                fill.resumes += 1
                log.info("upstream %s: download of %s %s cut at %d of %d bytes (%s); resuming",
                         client.name, upstream_repo, fill.digest, fill.written, fill.size, e)

    async def _receive(self, fill: Fill, client: RegistryClient, stream: Answer) -> None:
        """One answer of the upstream: the first one stages the fill and starts the followers; each is written
        while it arrives (`blobwriter.feed`), and what arrived before a cut is kept."""
        if fill.staged is None:
            if stream.size is None:
                raise errors.Unavailable(f"{client.name} sent blob {fill.digest} without a Content-Length")
            if stream.size == 0 and Digest.of(b"", fill.digest.algorithm) != fill.digest:
                # An empty answer is complete as soon as its headers are out: refuse it first.
                raise errors.Unavailable(f"upstream {client.name} sent an empty body for blob {fill.digest}")
            fill.size = stream.size
            fill.staged = await self.store.run(self.staging.start, fill.digest, stream.size)
            fill.started.set()
        elif stream.size != fill.size:
            raise errors.Unavailable(f"{client.name} changed the size of {fill.digest} "
                                     f"from {fill.size} to {stream.size} while resuming")
        await feed(self.store.run, stream, fill.staged.writer, buffer=_BUFFER, join=True,
                   keep=(errors.Unavailable,), written=fill.arrived)

    async def _seal(self, fill: Fill, client: RegistryClient, upstream_repo: str) -> None:
        """Check the whole blob; from then on the followers may send their last bytes."""
        assert fill.staged is not None
        if fill.written != fill.size:
            raise errors.Unavailable(f"{client.name} sent {fill.written} of {fill.size} bytes of {fill.digest}")
        try:
            await self.store.run(fill.staged.seal)
        except errors.DigestInvalid as e:
            raise errors.Unavailable(f"upstream {client.name}: the {fill.written} bytes it sent for "
                                     f"{upstream_repo} blob {fill.digest} do not match that digest "
                                     f"({e.detail['actual']})") from None
        fill.verified = True
        fill.notify()

    # --- followers ------------------------------------------------------------------------------------
    async def _follow(self, fill: Fill, offset: int, end: int) -> AsyncIterator[bytes]:
        reader = await self.store.run(self.staging.open, fill.digest)
        if reader is None:
            raise _as_registry_error(fill.error or errors.Unavailable(f"the download of {fill.digest} failed"))
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
                    data = await self.store.run(reader.read, offset, min(fill.written - offset, _BUFFER))
                if offset + len(data) >= end:
                    data = data[:end - offset]
                    while not fill.verified:  # the final bytes of this answer wait for the digest check
                        if fill.error is not None:
                            raise _as_registry_error(fill.error)
                        await fill.changed.wait()
                offset += len(data)
                yield data
        finally:
            await self.store.run(reader.close)

    async def _follow_other_process(self, d: Digest) -> Source | None:
        """Tail the fill another process leads; None when that fill ended without the blob (start anew)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SIZE_WAIT
        while True:
            if d in self._fills:
                return None  # it was this process that took the claim a moment ago: follow that fill instead
            size = await self.store.run(self.staging.announced_size, d)
            if size is not None:
                break
            leader_gone = await self.store.run(self.staging.leader_gone, d)
            if await self.store.run(self.staging.committed, d):
                raise _Committed()
            if leader_gone:
                return None
            if loop.time() > deadline:
                raise errors.Unavailable(f"the download of {d} in another worker did not start")
            await asyncio.sleep(_POLL)
        if d in self._fills:
            return None
        return Source(size, functools.partial(self._tail, d))

    async def _tail(self, d: Digest, offset: int, end: int) -> AsyncIterator[bytes]:
        reader = await self.store.run(self.staging.open, d)
        if reader is None:
            raise errors.Unavailable(f"the download of {d} failed in another worker")
        try:
            while offset < end:
                data = await self.store.run(reader.read, offset, min(end - offset, _BUFFER))
                if data and offset + len(data) < end:
                    offset += len(data)
                    yield data
                    continue
                # The bytes that end this answer wait for the leader's verdict, as do we when no new bytes came.
                verdict = await self.store.run(reader.verdict)
                while data and verdict is None:
                    await asyncio.sleep(_POLL)
                    verdict = await self.store.run(reader.verdict)
                if verdict is False:
                    raise errors.Unavailable(f"the download of {d} failed in another worker")
                if data:
                    offset += len(data)
                    yield data
                elif verdict is None:
                    await asyncio.sleep(_POLL)
        finally:
            await self.store.run(reader.close)


class _Committed(Exception):
    """The blob reached the store while we looked: serve it from there."""


def is_committed(e: BaseException) -> bool:
    return isinstance(e, _Committed)


def _as_registry_error(e: BaseException) -> errors.RegistryError:
    if isinstance(e, errors.RegistryError):
        return e
    return errors.Unavailable(f"upstream fetch failed: {e or type(e).__name__}")
