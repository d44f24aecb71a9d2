"""The in-memory driver (Distribution's `inmemory`): for tests and throw-away registries."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import BinaryIO

from k3sreg.storage.driver import FileInfo, PathNotFound


class _MemoryWriter:
    def __init__(self, driver: MemoryDriver, path: str, append: bool):
        self._driver, self._path = driver, path
        with driver.lock:
            self._buf = bytearray(driver.files.get(path, b"") if append else b"")
        self.size = len(self._buf)

    def write(self, data: bytes) -> None:
        self._buf += data
        self.size += len(data)

    def close(self, sync: bool = False) -> None:
        with self._driver.lock:
            self._driver.files[self._path] = bytes(self._buf)
            self._driver.mtimes[self._path] = time.time()


class MemoryDriver:
    """A dict of path -> bytes; directories are implied by the paths."""

    name = "inmemory"
    cheap_reads = True

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mtimes: dict[str, float] = {}
        self.lock = threading.Lock()

    def get_content(self, path: str) -> bytes:
        with self.lock:
            try:
                return self.files[path]
            except KeyError:
                raise PathNotFound(path) from None

    def put_content(self, path: str, data: bytes) -> None:
        with self.lock:
            self.files[path] = bytes(data)
            self.mtimes[path] = time.time()

    def stat(self, path: str) -> FileInfo | None:
        with self.lock:
            if path in self.files:
                return FileInfo(len(self.files[path]), self.mtimes[path], False)
            prefix = path.rstrip("/") + "/"
            mtimes = [m for p, m in self.mtimes.items() if p.startswith(prefix)]
            return FileInfo(0, max(mtimes), True) if mtimes else None

    def list(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        with self.lock:
            return sorted({p[len(prefix):].split("/", 1)[0] for p in self.files if p.startswith(prefix)})

    def delete(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        with self.lock:
            doomed = [p for p in self.files if p == path or p.startswith(prefix)]
            for p in doomed:
                del self.files[p]
                del self.mtimes[p]
        return bool(doomed)

    def move(self, src: str, dst: str) -> None:
        with self.lock:
            if src not in self.files:
                raise PathNotFound(src)
            self.files[dst] = self.files.pop(src)
            self.mtimes[dst] = self.mtimes.pop(src)

    def touch(self, path: str) -> None:
        with self.lock:
            if path in self.mtimes:
                self.mtimes[path] = time.time()

    def truncate(self, path: str, size: int) -> None:
        with self.lock:
            self.files[path] = self.files[path][:size]

    def writer(self, path: str, append: bool) -> _MemoryWriter:
        return _MemoryWriter(self, path, append)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        f = io.BytesIO(self.get_content(path))
        f.seek(offset)
        return f

    def local_path(self, path: str) -> Path | None:
        return None
