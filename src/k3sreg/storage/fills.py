"""Fill staging: where a pull-through fill's bytes wait for their digest check, and how worker processes
share one fill. The coordination around it (one leader, followers fed as bytes arrive) is `upstream.fill`.

On the filesystem (`FileFillStaging`), one fill of blob <hex> is these files under `_fills/` (see `paths`):

    <hex>.lock       locked by the leader for the whole fill (its release tells other processes it ended)
    <hex>.size       the blob's size, written once the upstream answered: followers in other processes wait for it
    <hex>.partial    the bytes as they arrive
    <hex>.verified   the same file (renamed, same inode) once every byte matched the digest; then moved into
                     the store as blobs/<alg>/<xx>/<hex>/data, still the same inode

A follower holds the file open under whichever name, so the inode it reads says which stage it reached.

On an object store the same roles need other means, which is why `FillStaging` is a Protocol: the lock and the
announced size live in the shared lock service (see `driver.LockService`), the bytes go to a multipart upload
that becomes the blob on commit, and followers on other replicas, which cannot read an unfinished multipart
upload, wait for the commit (or for the `.verified` mark in the lock service) instead of tailing a file.
"""

from __future__ import annotations

import contextlib
import os
from typing import BinaryIO, Protocol

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobInfo, BlobStore
from k3sreg.storage.blobwriter import BlobWriter, HashState
from k3sreg.storage.driver import LocalFiles, Lock, LockService, PathNotFound

Claim = Lock
"""The claim on a fill: held by its leader, `release()` lets the next one in."""


class StagedFill(Protocol):
    """The leader's side of one fill: `writer` takes the bytes, then `seal`, `commit`, or `discard`."""

    writer: BlobWriter

    def seal(self) -> None:
        """Check the bytes against the digest and size (DigestInvalid, SizeInvalid), and tell followers in
        other processes that they may send the last bytes."""
        ...

    def commit(self, repo: str) -> BlobInfo:
        """Make the sealed bytes blob `d` of the store, linked into `repo`."""
        ...


class FillReader(Protocol):
    """A follower's view of the staged bytes."""

    def read(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes from `offset`, as far as they have arrived (b"" when none yet)."""
        ...

    def verdict(self) -> bool | None:
        """Whether the bytes read are a checked copy of the blob (True), never will be (False: the leader let
        go without sealing them), or may still become one (None)."""
        ...

    def close(self) -> None: ...


class FillStaging(Protocol):
    """The storage side of pull-through fills, shared by the worker processes (or replicas) of one store."""

    def claim(self, d: Digest) -> Claim | None:
        """Lead the fill of `d`: the claim, or None while another process leads it."""
        ...

    def committed(self, d: Digest) -> bool:
        """Whether blob `d` is in the store."""
        ...

    def start(self, d: Digest, size: int) -> StagedFill:
        """Stage a fill of `size` bytes (under a claim) and announce its size to other processes."""
        ...

    def discard(self, d: Digest, staged: StagedFill | None) -> None:
        """Remove whatever a failed fill of `d` left (the claim stays with its holder)."""
        ...

    def announced_size(self, d: Digest) -> int | None:
        """The size the leader of `d`'s fill announced, None until it did."""
        ...

    def leader_gone(self, d: Digest) -> bool:
        """Whether nobody holds the claim on `d`'s fill."""
        ...

    def open(self, d: Digest) -> FillReader | None:
        """Read `d`'s fill as it goes (or the blob it became); None when there is nothing to read."""
        ...


class _LocalStagedFill:
    def __init__(self, staging: FileFillStaging, d: Digest, size: int, writer: BlobWriter):
        self._staging, self._d, self._size = staging, d, size
        self.writer = writer

    def seal(self) -> None:
        self.writer.verify(self._d, self._size)
        self.writer.rename(paths.fill_verified(self._d))

    def commit(self, repo: str) -> BlobInfo:
        info = self.writer.commit(self._d, repo)
        self._staging.blobs.driver.delete(paths.fill_size(self._d))
        return info


class _LocalFillReader:
    def __init__(self, staging: FileFillStaging, d: Digest, f: BinaryIO):
        self._staging, self._d, self._f = staging, d, f

    def read(self, offset: int, n: int) -> bytes:
        return os.pread(self._f.fileno(), n, offset)

    def verdict(self) -> bool | None:
        # The leader renames before it lets go of the lock: ask about the lock first, then the names, or a
        # rename between the two questions would look like a failure.
        ended = self._staging.leader_gone(self._d)
        mine = os.fstat(self._f.fileno())
        for path in (paths.fill_verified(self._d), paths.blob_data(self._d)):
            try:
                st = os.stat(self._staging.local(path))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                return True
        return False if ended else None

    def close(self) -> None:
        self._f.close()


class FileFillStaging:
    """Fills staged as local files under `_fills/`, shared by the worker processes serving this storage."""

    def __init__(self, blobs: BlobStore, locks: LockService):
        driver = blobs.driver
        if not isinstance(driver, LocalFiles):
            raise errors.ConfigError(["the pull-through cache needs the filesystem storage driver"])
        self.blobs, self._locks, self._files = blobs, locks, driver
        driver.local_path(paths.FILLS).mkdir(parents=True, exist_ok=True)

    def local(self, path: str) -> str:
        return str(self._files.local_path(path))

    def claim(self, d: Digest) -> Lock | None:
        return self._locks.try_lock(paths.fill_lock(d))

    def committed(self, d: Digest) -> bool:
        return self.blobs.stat_global(d) is not None

    def start(self, d: Digest, size: int) -> _LocalStagedFill:
        driver = self.blobs.driver
        driver.delete(paths.fill_verified(d))  # left by a leader that died before its commit
        file = driver.writer(paths.fill_partial(d), append=False)
        driver.put_content(paths.fill_size(d), str(size).encode(), sync=False)
        return _LocalStagedFill(self, d, size, BlobWriter(self.blobs, paths.fill_partial(d), file,
                                                          HashState(d.algorithm)))

    def discard(self, d: Digest, staged: StagedFill | None) -> None:
        # The size file first: a request in another process that finds no size file waits for the lock and then
        # starts a new fill, instead of tailing this doomed one.
        driver = self.blobs.driver
        driver.delete(paths.fill_size(d))
        if staged is not None:
            staged.writer.close()
        driver.delete(paths.fill_partial(d))
        driver.delete(paths.fill_verified(d))

    def announced_size(self, d: Digest) -> int | None:
        try:
            return int(self.blobs.driver.get_content(paths.fill_size(d)))
        except (PathNotFound, ValueError):
            return None

    def leader_gone(self, d: Digest) -> bool:
        lock = self.claim(d)
        if lock is None:
            return False
        lock.release()
        return True

    def open(self, d: Digest) -> _LocalFillReader | None:
        for path in (paths.fill_partial(d), paths.fill_verified(d), paths.blob_data(d)):
            with contextlib.suppress(FileNotFoundError):
                return _LocalFillReader(self, d, open(self.local(path), "rb"))
        return None
