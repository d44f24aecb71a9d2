"""The storage driver Protocol: a small, synchronous key/value-and-stream interface.

Drivers are synchronous on purpose: the store composes several driver calls into one operation and runs
the whole operation in a worker thread, one hop per operation, so the event loop never waits on disk. The
exception is a driver whose `cheap_reads` is true (local files, memory): the read-only lookups behind blob
HEAD/GET and manifest GET (a stat and one or two link files of ~71 bytes, from the page cache) then run inline,
because the thread hop cost more than the reads (blob HEAD at c32: 10.8k → 16.5k req/s, p99 9 → 4 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


class PathNotFound(KeyError):
    """The driver path does not exist."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    size: int
    mtime: float
    is_dir: bool


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

    def put_content(self, path: str, data: bytes) -> None:
        """Write a small file atomically: readers see the old content or the new one, never a part."""
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
        """Open `path` for appending (or truncate it when `append` is False)."""
        ...

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """A binary reader positioned at `offset`; raises PathNotFound."""
        ...

    def local_path(self, path: str) -> Path | None:
        """A local file the server may sendfile() from, or None when the driver has no such file."""
        ...
