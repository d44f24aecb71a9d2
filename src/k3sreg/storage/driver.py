"""The storage driver Protocols: `Driver`, a small synchronous key/value-and-stream interface that every backend
offers (an object store included), and the optional `LockService` and `LocalFiles` for what only some can do.

Drivers are synchronous on purpose: the store composes several driver calls into one operation and runs
the whole operation in a worker thread, one hop per operation, so the event loop never waits on disk. The
exception is a driver whose `cheap_reads` is true (local files, memory): the read-only lookups behind blob
HEAD/GET and manifest GET (a stat and one or two link files of ~71 bytes, from the page cache) then run inline,
because the thread hop cost more than the reads (blob HEAD at c32: 10.8k → 16.5k req/s, p99 9 → 4 ms).

Every driver refuses a path that could leave its root (`check_path`), whatever the layers above let through: the
HTTP layer validates names against the grammar, and this is the second wall. A name too long for the file system
cannot exist: reads answer "not found", writes raise StoragePathInvalid (400 NAME_INVALID).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from k3sreg import errors


class PathNotFound(KeyError):
    """The driver path does not exist."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    size: int
    mtime: float
    is_dir: bool


def check_path(path: str) -> None:
    """Raise StoragePathInvalid unless `path` is relative, '/'-separated, free of NUL bytes, and has no empty,
    '.' or '..' segment: such a path stays under the root (symlinks aside), and is a name, not a way out.

    Runs on every driver call, so it is a few substring scans; segments are split only for a path that has a
    segment starting with '.', which no name of the layout does (tags may contain '..', never start with '.').
    """
    if (not path or path[0] == "/" or path[-1] == "/" or "//" in path or "\x00" in path
            or ((path[0] == "." or "/." in path) and any(seg in (".", "..") for seg in path.split("/")))):
        raise errors.StoragePathInvalid(f"{path[:200]!r} is not a storage path: it is empty, absolute, has an "
                                        "empty, '.' or '..' segment, or a NUL byte")


def too_long(e: OSError) -> bool:
    """Whether `e` says a name is longer than the file system allows (no such file can exist)."""
    return e.errno == errno.ENAMETOOLONG


def refuse_too_long(path: str) -> errors.StoragePathInvalid:
    return errors.StoragePathInvalid(f"a name in {path[:200]!r} is longer than the file system allows")


def storage_error(e: OSError) -> errors.RegistryError | None:
    """The API error for a storage failure the client should hear about (a full disk, a failing disk, a name
    too long), or None for anything else, which is a bug and stays an OSError."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.StorageFull(f"the registry's storage is full: {e.strerror}")
    if e.errno in (errno.EIO, errno.EROFS):
        return errors.Unavailable(f"the registry's storage failed: {e.strerror}")
    if e.errno == errno.ENAMETOOLONG:
        return errors.StoragePathInvalid("a name is longer than the registry's file system allows")
    return None


class Writer(Protocol):
    """An appendable file; nothing of it is visible at its final path until moved there."""

    size: int

    def write(self, data: bytes) -> None:
        """Append `data`. When readers see it depends on the driver: local files at once (followers of a fill
        read the file as it grows), memory and object stores at `close`."""
        ...

    def close(self, sync: bool = False) -> None:
        """Finish writing; with `sync` the bytes are durable before this returns. A second call does nothing."""
        ...

    def cancel(self) -> None:
        """Stop writing and take back every byte this writer wrote: the file is cut back to the size it had
        when the writer opened it (a new file to nothing). A closed writer stays as it is."""
        ...


class Driver(Protocol):
    """What the store needs of every backend: filesystem, memory, and an object store (S3) alike.

    What only some backends can do is in the optional protocols below (`LockService`, `LocalFiles`); callers
    ask for them with isinstance.
    """

    name: str
    cheap_reads: bool  # stat and small reads take microseconds: the lookups of a GET may run on the loop

    def get_content(self, path: str) -> bytes:
        """The whole content of a small file; raises PathNotFound."""
        ...

    def put_content(self, path: str, data: bytes, sync: bool = True) -> None:
        """Write a small file atomically: readers see the old content or the new one, never a part. With
        `sync` (the default) the content is on disk before it appears at `path`."""
        ...

    def stat(self, path: str) -> FileInfo | None:
        """Size and kind of `path`, or None when it does not exist."""
        ...

    def list(self, path: str) -> list[str]:
        """Names of the direct children of directory `path`; [] when it does not exist."""
        ...

    def walk(self, path: str) -> Iterator[str]:
        """The paths of every file below directory `path`, at any depth, in no set order; nothing when it
        does not exist. Directories themselves are not yielded (an object store has none)."""
        ...

    def delete(self, path: str) -> bool:
        """Remove a file or a whole directory tree; False when there was nothing."""
        ...

    def move(self, src: str, dst: str) -> None:
        """Atomically put `src` at `dst`, replacing what was there."""
        ...

    def writer(self, path: str, append: bool) -> Writer:
        """Append to the existing file `path` (PathNotFound when there is none), or create or empty it when
        `append` is False. Appending never creates: a writer must not bring back a file someone removed."""
        ...

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """A binary reader positioned at `offset`; raises PathNotFound."""
        ...


class Lock(Protocol):
    """An exclusive lock held until `release()`."""

    def release(self) -> None: ...


@runtime_checkable
class LockService(Protocol):
    """Exclusive locks shared by every process that serves this storage: upload sessions, fills, eviction.

    The filesystem driver takes flock(2) on a file (released by the kernel when its process dies); the memory
    driver keeps them in memory (one process). An object store has no locks of its own: replicas will share a
    lock service (Redis, as Distribution and Harbor use: SET NX with an expiry renewed while held, released
    with a compare-and-delete), passed to the store beside the driver. What every implementation keeps is the
    contract below, including that a lock dies with its directory.
    """

    def try_lock(self, path: str) -> Lock | None:
        """Take the exclusive lock named by file `path`, shared by every process on this storage; None while
        someone else holds it. The file is created in its directory if needed; PathNotFound when the directory
        does not exist, or was removed (or moved away) while the lock was being taken: the lock lives and
        dies with its directory."""
        ...


def own_locks(driver: Driver) -> LockService:
    """The driver's own lock service; ConfigError for a driver without one (an object store needs one given)."""
    if not isinstance(driver, LockService):
        raise errors.ConfigError([f"storage driver {driver.name} needs a lock service shared by every replica"])
    return driver


@runtime_checkable
class LocalFiles(Protocol):
    """What only a driver whose files are local files can do: sendfile(2) from them, and set their mtime.

    The server asks for it to serve blobs with sendfile; the filesystem fill staging (`fills`) and the access
    clock (`access`) need it too. Drivers without it stream blobs through `reader`.
    """

    def local_path(self, path: str) -> Path:
        """The local file behind driver path `path` (it may not exist)."""
        ...

    def touch(self, path: str) -> None:
        """Set the modification time of `path` to now, if it exists (the cache records last access this way)."""
        ...
