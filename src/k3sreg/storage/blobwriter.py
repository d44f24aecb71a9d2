"""The one way bytes enter the blob store: a BlobWriter (as Distribution's blobwriter.go), fed by `feed`.

    body ──► feed: receive the next buffer (event loop)  ║ write this one (thread) ║ hash it (thread)
                                                          ▼                          ▼
             BlobWriter: staging file (upload data, fill partial) + running hash
             commit(d): size and digest checked ─► synced, moved to blobs/<alg>/<xx>/<hex>/data
             cancel(): the bytes this writer appended are taken back

Uploads (one BlobWriter per request, the hash carried from request to request) and pull-through fills (one
for the whole download) both write this way. Overlapping the three steps is what makes a push outrun
docker-registry: writing and hashing both release the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobInfo, BlobStore
from k3sreg.storage.driver import Driver, Writer

_REHASH_CHUNK = 4 << 20


class HashState:
    """The running hash of a staging file, valid while `offset` equals the file's size."""

    __slots__ = ("algorithm", "hasher", "offset")

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self.hasher = hashlib.new(algorithm)
        self.offset = 0

    def update(self, data: bytes) -> None:
        self.hasher.update(data)
        self.offset += len(data)


def hash_file(driver: Driver, path: str, algorithm: str = "sha256") -> HashState:
    """The hash of the whole file `path`, as a state that appends can continue."""
    state = HashState(algorithm)
    with driver.reader(path) as f:
        while chunk := f.read(_REHASH_CHUNK):
            state.update(chunk)
    return state


class BlobWriter:
    """Appends to the staging file `path` (through the driver writer `file`) while `state` hashes the same bytes;
    `commit(d)` checks them against `d` and installs the file as blob `d`. Used from worker threads.

    `write_parts` and `hash_parts` of the same bytes may run at once in two threads; `write` does both.
    """

    def __init__(self, blobs: BlobStore, path: str, file: Writer, state: HashState):
        self.blobs, self.path, self.state = blobs, path, state
        self._file = file
        self._verified: Digest | None = None

    @property
    def size(self) -> int:
        return self._file.size

    def write_parts(self, parts: list[bytes]) -> None:
        """Append to the file. The request body arrives in pieces; writing them one by one spares a copy into
        one big buffer."""
        for part in parts:
            self._file.write(part)

    def hash_parts(self, parts: list[bytes]) -> None:
        for part in parts:
            self.state.update(part)

    def write(self, data: bytes) -> None:
        self.write_parts([data])
        self.hash_parts([data])

    def close(self, sync: bool = False) -> None:
        """Stop writing; the staging file stays. Does nothing the second time."""
        self._file.close(sync)

    def cancel(self) -> None:
        """Take back the bytes this writer appended and stop writing (the hash no longer matches the file)."""
        self._file.cancel()

    def hexdigest(self, algorithm: str) -> str:
        """The digest of the whole staging file: from the running hash when it covers the file, else read
        again (another worker appended, or another algorithm is asked for)."""
        state = self.state
        if state.algorithm != algorithm or state.offset != self.size:
            state = hash_file(self.blobs.driver, self.path, algorithm)
        return state.hasher.hexdigest()

    def verify(self, d: Digest, size: int | None = None) -> None:
        """SizeInvalid unless the file has `size` bytes (when given); DigestInvalid unless its digest is `d`."""
        if size is not None and size != self.size:
            raise errors.SizeInvalid(f"{self.size} bytes written, {size} expected", detail={"digest": str(d)})
        actual = self.hexdigest(d.algorithm)
        if actual != d.hex:
            raise errors.DigestInvalid(detail={"expected": str(d), "actual": f"{d.algorithm}:{actual}"})
        self._verified = d

    def rename(self, dst: str) -> None:
        """Move the staging file to `dst` (same file: an open writer or reader goes on with it there)."""
        self.blobs.driver.move(self.path, dst)
        self.path = dst

    def commit(self, d: Digest, repo: str, size: int | None = None) -> BlobInfo:
        """Verify (unless `verify(d)` did already), make the bytes durable, move them into place as blob `d`
        and link it into `repo`; when the store has `d` already, the staging file is removed instead."""
        if self._verified != d:
            self.verify(d, size)

        def install() -> None:
            self.close(sync=True)
            self.blobs.install(self.path, d, self.size)

        def discard() -> None:
            self.close()
            self.blobs.driver.delete(self.path)

        self.blobs.link_committed(repo, d, install, discard)
        return BlobInfo(d, self.size, paths.blob_data(d))


Run = Callable[..., Awaitable[Any]]


class _Pipeline:
    """One batch in flight (written in one thread, hashed in another) while the next one is received."""

    def __init__(self, run: Run, writer: BlobWriter, join: bool, written: Callable[[list[bytes]], None] | None):
        self._run, self._writer, self._join, self._written = run, writer, join, written
        self._pending: asyncio.Future[tuple[Any, Any]] | None = None
        self._batch: list[bytes] = []

    def submit(self, parts: list[bytes]) -> None:
        # Joined, a batch is one buffer (one copy; a growing bytearray would copy twice).
        batch = [b"".join(parts)] if self._join else parts
        self._pending = asyncio.gather(self._run(self._writer.write_parts, batch),
                                       self._run(self._writer.hash_parts, batch))
        self._batch = batch

    async def settle(self) -> None:
        """Wait for the batch in flight; then it is in the file and `written` hears of it."""
        if self._pending is not None:
            await self._pending
            self._pending = None
            if self._written is not None:
                self._written(self._batch)

    async def drain(self) -> None:
        """After a failure: let the threads finish before anyone closes the file."""
        if self._pending is not None:
            with contextlib.suppress(BaseException):
                await self._pending


async def feed(run: Run, body: AsyncIterable[bytes], writer: BlobWriter, *, buffer: int, limit: int = 0,
               join: bool = False, keep: tuple[type[BaseException], ...] = (),
               written: Callable[[list[bytes]], None] | None = None) -> int:
    """Append `body` to `writer` in batches of about `buffer` bytes; returns the bytes received.

    Receiving the next batch overlaps with writing and hashing this one, in the threads of `run` (the store's).
    `written(batch)` hears of each batch once it is in the file. TooLarge once the blob would pass `limit`
    bytes (0: no limit). When `body` raises one of `keep`, what arrived before is written first (a cut
    download resumes after it); any other failure leaves the writer to its owner's `cancel`.
    """
    pipe = _Pipeline(run, writer, join, written)
    begin, received, size = writer.size, 0, 0
    parts: list[bytes] = []
    try:
        try:
            async for chunk in body:
                received += len(chunk)
                if limit and begin + received > limit:
                    raise errors.TooLarge(f"blob exceeds the limit of {limit} bytes")
                parts.append(chunk)
                size += len(chunk)
                if size >= buffer:
                    await pipe.settle()
                    pipe.submit(parts)
                    parts, size = [], 0
        except keep:
            await pipe.settle()
            if parts:
                pipe.submit(parts)
                await pipe.settle()
            raise
        await pipe.settle()
        if parts:
            pipe.submit(parts)
            await pipe.settle()
    finally:
        await pipe.drain()
    return received
