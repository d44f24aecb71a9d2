"""The filesystem driver: Distribution's `filesystem` storage, with atomic writes."""

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

    def __init__(self, path: Path, append: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("ab" if append else "wb")
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

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _p(self, path: str) -> Path:
        return self.root / path

    def get_content(self, path: str) -> bytes:
        try:
            return self._p(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(path) from None

    def put_content(self, path: str, data: bytes) -> None:
        target = self._p(path)
        tmp = self._p(f"{TMP}/{uuid.uuid4().hex}")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                # A rename can reach the disk before the data: sync first so a crash never leaves an empty link.
                os.fsync(f.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def stat(self, path: str) -> FileInfo | None:
        try:
            st = self._p(path).stat()
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
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            return False
        return True

    def move(self, src: str, dst: str) -> None:
        target = self._p(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._p(src).replace(target)
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
            f = self._p(path).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path) from None
        if offset:
            with contextlib.suppress(OSError):
                f.seek(offset)
        return f

    def local_path(self, path: str) -> Path | None:
        return self._p(path)
