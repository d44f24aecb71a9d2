"""The storage driver Protocol: a small, synchronous key/value-and-stream interface.

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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

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


class Lock(Protocol):
    """An exclusive lock held until `release()`."""

    def release(self) -> None: ...


class Writer(Protocol):
    """An appendable file; nothing of it is visible at its final path until moved there."""

    size: int

    def write(self, data: bytes) -> None: ...

    def close(self, sync: bool = False) -> None: ...


class Driver(Protocol):
    """What the store needs of a backend (filesystem, memory, S3)."""

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

    def delete(self, path: str) -> bool:
        """Remove a file or a whole directory tree; False when there was nothing."""
        ...

    def move(self, src: str, dst: str) -> None:
        """Atomically put `src` at `dst`, replacing what was there."""
        ...

    def touch(self, path: str) -> None:
        """Set the modification time of `path` to now (the cache records last access this way)."""
        ...

    def truncate(self, path: str, size: int) -> None:
        """Cut a file back to `size` bytes (a failed append is undone this way)."""
        ...

    def writer(self, path: str, append: bool) -> Writer:
        """Append to the existing file `path` (PathNotFound when there is none), or create or empty it when
        `append` is False. Appending never creates: a writer must not bring back a file someone removed."""
        ...

    def try_lock(self, path: str) -> Lock | None:
        """Take the exclusive lock named by file `path`, shared by every process on this storage; None while
        someone else holds it. The file is created in its directory if needed; PathNotFound when the directory
        does not exist, or was removed (or moved away) while the lock was being taken: the lock lives and
        dies with its directory."""
        ...

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """A binary reader positioned at `offset`; raises PathNotFound."""
        ...

    def local_path(self, path: str) -> Path | None:
        """A local file the server may sendfile() from, or None when the driver has no such file."""
        ...
