"""The filesystem driver: Distribution's `filesystem` storage, with atomic writes.

Paths are joined as strings, not pathlib objects: a tags/list of 1000 tags stats 1000 files, and pathlib's
parsing cost more than the system calls.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import BinaryIO

from k3sreg.storage.driver import FileInfo, PathNotFound
from k3sreg.storage.paths import TMP


class FileWriter:
    """Appends to a local file; `close(sync=True)` makes the bytes durable before a commit renames it."""

    def __init__(self, path: str, append: bool):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._f = open(path, "ab" if append else "wb")  # noqa: SIM115 (closed by close())
        self.size = self._f.tell()

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self.size += len(data)

    def close(self, sync: bool = False) -> None:
        if sync:
            self._f.flush()
            os.fsync(self._f.fileno())
        self._f.close()


class FilesystemDriver:
    """Files under `root`; small writes go through `_tmp/` and a rename, so they are all-or-nothing."""

    name = "filesystem"
    cheap_reads = True

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._base = str(self.root) + os.sep

    def _p(self, path: str) -> str:
        return self._base + path

    def get_content(self, path: str) -> bytes:
        try:
            with open(self._p(path), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None

    def put_content(self, path: str, data: bytes) -> None:
        target = self._p(path)
        tmp = self._p(f"{TMP}/{uuid.uuid4().hex}")
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                # A rename can reach the disk before the data: sync first so a crash never leaves an empty link.
                os.fsync(f.fileno())
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def stat(self, path: str) -> FileInfo | None:
        try:
            st = os.stat(self._p(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileInfo(st.st_size, st.st_mtime, stat.S_ISDIR(st.st_mode))

    def list(self, path: str) -> list[str]:
        try:
            return os.listdir(self._p(path))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, path: str) -> bool:
        p = self._p(path)
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
        except FileNotFoundError:
            return False
        return True

    def move(self, src: str, dst: str) -> None:
        target = self._p(dst)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.replace(self._p(src), target)
        except FileNotFoundError:
            raise PathNotFound(src) from None

    def touch(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._p(path))

    def truncate(self, path: str, size: int) -> None:
        os.truncate(self._p(path), size)

    def writer(self, path: str, append: bool) -> FileWriter:
        return FileWriter(self._p(path), append)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        try:
            f = open(self._p(path), "rb")  # noqa: SIM115 (the caller closes it)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        if offset:
            with contextlib.suppress(OSError):
                f.seek(offset)
        return f

    def local_path(self, path: str) -> Path | None:
        return Path(self._p(path))
