"""The in-memory driver (Distribution's `inmemory`): for tests and throw-away registries."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

from k3sreg.storage.driver import FileInfo, PathNotFound, check_path


class _MemoryWriter:
    """Collects the bytes and publishes them whole at `close`: readers see the file as it was until then."""

    def __init__(self, driver: MemoryDriver, path: str, append: bool):
        self._driver, self._path = driver, path
        with driver.lock:
            if append and path not in driver.files:
                raise PathNotFound(path)
            self._buf: bytearray | None = bytearray(driver.files.get(path, b"") if append else b"")
        self.size = len(self._buf)

    def write(self, data: bytes) -> None:
        assert self._buf is not None, "write after close"
        self._buf += data
        self.size += len(data)

    def close(self, sync: bool = False) -> None:
        if self._buf is None:
            return
        data, self._buf = bytes(self._buf), None
        with self._driver.lock:
            self._driver.files[self._path] = data
            self._driver.mtimes[self._path] = time.time()

    def cancel(self) -> None:
        self._buf = None


class _MemoryLock:
    def __init__(self, driver: MemoryDriver, path: str):
        self._driver, self._path = driver, path

    def release(self) -> None:
        with self._driver.lock:
            self._driver.held.discard(self._path)


class MemoryDriver:
    """A dict of path -> bytes; directories are implied by the paths. A LockService for one process only (the
    locks are in memory); no LocalFiles."""

    name = "inmemory"
    cheap_reads = True

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mtimes: dict[str, float] = {}
        self.lock = threading.Lock()
        self.held: set[str] = set()

    def get_content(self, path: str) -> bytes:
        check_path(path)
        with self.lock:
            try:
                return self.files[path]
            except KeyError:
                raise PathNotFound(path) from None

    def put_content(self, path: str, data: bytes, sync: bool = True) -> None:
        check_path(path)
        with self.lock:
            self.files[path] = bytes(data)
            self.mtimes[path] = time.time()

    def stat(self, path: str) -> FileInfo | None:
        check_path(path)
        with self.lock:
            if path in self.files:
                return FileInfo(len(self.files[path]), self.mtimes[path], False)
            prefix = path + "/"
            mtimes = [m for p, m in self.mtimes.items() if p.startswith(prefix)]
            return FileInfo(0, max(mtimes), True) if mtimes else None

    def list(self, path: str) -> list[str]:
        check_path(path)
        prefix = path + "/"
        with self.lock:
            return sorted({p[len(prefix):].split("/", 1)[0] for p in self.files if p.startswith(prefix)})

    def walk(self, path: str) -> Iterator[str]:
        check_path(path)
        prefix = path + "/"
        with self.lock:
            found = [p for p in self.files if p.startswith(prefix)]
        yield from found

    def delete(self, path: str) -> bool:
        check_path(path)
        prefix = path + "/"
        with self.lock:
            doomed = [p for p in self.files if p == path or p.startswith(prefix)]
            for p in doomed:
                del self.files[p]
                del self.mtimes[p]
        return bool(doomed)

    def move(self, src: str, dst: str) -> None:
        check_path(src)
        check_path(dst)
        with self.lock:
            if src not in self.files:
                raise PathNotFound(src)
            self.files[dst] = self.files.pop(src)
            self.mtimes[dst] = self.mtimes.pop(src)

    def writer(self, path: str, append: bool) -> _MemoryWriter:
        check_path(path)
        return _MemoryWriter(self, path, append)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        check_path(path)
        f = io.BytesIO(self.get_content(path))
        f.seek(offset)
        return f

    def try_lock(self, path: str) -> _MemoryLock | None:
        check_path(path)
        parent = path.rsplit("/", 1)[0] + "/"
        with self.lock:
            if not any(p.startswith(parent) for p in self.files):
                raise PathNotFound(path)
            if path in self.held:
                return None
            self.held.add(path)
        return _MemoryLock(self, path)
