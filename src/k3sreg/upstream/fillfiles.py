"""The files of one blob fill under `_fills/`, and the blocking operations on them (each run in a worker thread).

    <hex>.lock       flock, held by the leader for the whole fill (its release tells other processes it ended)
    <hex>.size       the blob's size, written once the upstream answered: followers in other processes wait for it
    <hex>.partial    the bytes as they arrive
    <hex>.verified   the same file (renamed, same inode) once every byte matched the digest; then moved into
                     the store as blobs/<alg>/<xx>/<hex>/data, still the same inode

A follower holds the file open under whichever name, so the inode it reads says which stage it reached.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True, slots=True)
class FillFiles:
    """The names one fill's bytes go by; `blob` is where the store keeps the committed blob."""

    root: Path
    hex: str
    blob: Path

    @property
    def lock(self) -> Path:
        return self.root / f"{self.hex}.lock"

    @property
    def size(self) -> Path:
        return self.root / f"{self.hex}.size"

    @property
    def partial(self) -> Path:
        return self.root / f"{self.hex}.partial"

    @property
    def verified(self) -> Path:
        return self.root / f"{self.hex}.verified"

    def create(self, size: int) -> BinaryIO:
        """Open a new partial file and announce `size` to other processes."""
        self.verified.unlink(missing_ok=True)  # left by a leader that died before its commit
        out = self.partial.open("wb")
        tmp = self.size.with_suffix(".size-tmp")
        tmp.write_text(str(size))
        tmp.replace(self.size)
        return out

    def discard(self, out: BinaryIO | None) -> None:
        """Remove what a failed fill left (the lock stays with its holder)."""
        # The size file first: a request in another process that finds no size file waits for the lock and then
        # starts a new fill, instead of tailing this doomed one.
        self.size.unlink(missing_ok=True)
        if out is not None:
            out.close()
        self.partial.unlink(missing_ok=True)
        self.verified.unlink(missing_ok=True)

    def open(self) -> BinaryIO:
        """The fill's file under the first name it has now (partial, verified, then the blob), for reading."""
        for path in (self.partial, self.verified):
            with contextlib.suppress(FileNotFoundError):
                return path.open("rb")
        return self.blob.open("rb")

    def read_size(self) -> int | None:
        try:
            return int(self.size.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def lock_free(self) -> bool:
        lock = try_lock(self.lock)
        if lock is None:
            return False
        lock.close()
        return True

    def verdict(self, f: BinaryIO) -> bool | None:
        """Whether the open file `f` is a checked copy of the blob (True), never will be (False: its leader let
        go of the lock without checking it), or may still become one (None)."""
        # The leader renames before it lets go of the lock: ask about the lock first, then the names, or a
        # rename between the two questions would look like a failure.
        ended = self.lock_free()
        mine = os.fstat(f.fileno())
        for path in (self.verified, self.blob):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                return True
        return False if ended else None


def try_lock(path: Path) -> BinaryIO | None:
    """The exclusive flock on `path` (the open file holds it), or None when another open file has it."""
    f = path.open("ab")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()  # followers read the file, not our buffer


def pread(f: BinaryIO, offset: int, n: int) -> bytes:
    return os.pread(f.fileno(), n, offset)
