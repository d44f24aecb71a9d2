"""The filesystem driver: Distribution's `filesystem` storage, with atomic writes.

Paths are joined as strings, not pathlib objects: a tags/list of 1000 tags stats 1000 files, and pathlib's
parsing cost more than the system calls.

Several worker processes share one root, so every directory operation expects another process to be working
on the same directory: a directory is deleted by renaming it into `_tmp/` first (it vanishes at once, and
nobody can add to it while it is emptied), and a write whose parent directory vanished between creating it
and renaming the file into it creates the directory again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from k3sreg.storage.driver import FileInfo, PathNotFound, check_path, refuse_too_long, too_long
from k3sreg.storage.paths import TMP

# A directory deleted by another process between our makedirs and our rename is created again; each retry is
# a few microseconds, and the other side would have to delete it again in that window every time.
_RETRIES = 16


def _absent(e: OSError) -> bool:
    """Whether `e` means there is no such file: missing, a file where a directory should be, or a name too long
    to exist at all."""
    return isinstance(e, (FileNotFoundError, NotADirectoryError)) or too_long(e)


def _remove_tree(path: str) -> None:
    """Remove a directory tree moved aside. A write whose path lookup passed through the directory before the
    move may still land in it just after (the lookup holds the directory, not its name), so go again until it
    is gone; such a write lost to a delete is the order "write, then delete"."""
    for _ in range(_RETRIES):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return


class FileWriter:
    """Appends to a local file with write(2), no buffer in between: what `write` returned is in the file for
    every reader (followers of a fill read it while it grows). `close(sync=True)` makes the bytes durable
    before a commit renames the file."""

    def __init__(self, path: str, append: bool):
        if append:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)  # never O_CREAT: see Driver.writer
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self._fd = fd
        self.size = self._begin = os.fstat(fd).st_size

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += len(data)

    def close(self, sync: bool = False) -> None:
        """Close; the file is closed even when the sync fails (a full disk), which is re-raised."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def cancel(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            os.ftruncate(fd, self._begin)
        finally:
            os.close(fd)
        self.size = self._begin


class _FileLock:
    """flock(2) on an open lock file: released by closing it, or by the kernel when the process dies."""

    def __init__(self, fd: int):
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FilesystemDriver:
    """Files under `root`; small writes go through `_tmp/` and a rename, so they are all-or-nothing. Also a
    LockService (flock) and LocalFiles."""

    name = "filesystem"
    cheap_reads = True

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._base = str(self.root) + os.sep

    def _p(self, path: str) -> str:
        check_path(path)
        return self._base + path

    def get_content(self, path: str) -> bytes:
        try:
            with open(self._p(path), "rb") as f:
                return f.read()
        except OSError as e:
            if _absent(e) or isinstance(e, IsADirectoryError):
                raise PathNotFound(path) from None
            raise

    def put_content(self, path: str, data: bytes, sync: bool = True) -> None:
        target = self._p(path)
        tmp = self._p(f"{TMP}/{uuid.uuid4().hex}")
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if sync:
                    f.flush()
                    # A rename can reach the disk before the data: sync first so a crash never leaves an empty
                    # link.
                    os.fsync(f.fileno())
            self._replace(tmp, target, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _replace(self, src: str, target: str, path: str) -> None:
        """rename(src, target), creating target's directory, again if another process deletes it meanwhile:
        the one rename-into-place of k3sreg's storage (small writes, commits, moves)."""
        for attempt in range(_RETRIES):
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(src, target)
                return
            except (FileNotFoundError, FileExistsError):
                # FileExistsError: makedirs met the directory and then did not find it (deleted meanwhile).
                if attempt == _RETRIES - 1 or not os.path.lexists(src):
                    raise
            except OSError as e:
                if too_long(e):
                    raise refuse_too_long(path) from None
                raise

    def stat(self, path: str) -> FileInfo | None:
        try:
            st = os.stat(self._p(path))
        except OSError as e:
            if _absent(e):
                return None
            raise
        return FileInfo(st.st_size, st.st_mtime, stat.S_ISDIR(st.st_mode))

    def list(self, path: str) -> list[str]:
        try:
            return os.listdir(self._p(path))
        except OSError as e:
            if _absent(e):
                return []
            raise

    def walk(self, path: str) -> Iterator[str]:
        top = self._p(path)
        cut = len(self._base)
        # os.walk skips a directory it cannot list: one deleted meanwhile is simply not there any more.
        for where, _dirs, files in os.walk(top):
            for name in files:
                yield f"{where[cut:]}/{name}"

    def delete(self, path: str) -> bool:
        p = self._p(path)
        try:
            st = os.lstat(p)
        except OSError as e:
            if _absent(e):
                return False
            raise
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(p)
            except FileNotFoundError:
                return False
            return True
        if path.startswith(f"{TMP}/"):
            _remove_tree(p)
            return True
        # rmtree of a directory another process is writing into fails ("Directory not empty"), and a writer
        # whose directory vanishes mid-way fails too. Moved aside in one rename, the directory is gone for
        # everyone at once and private while it is emptied; what a crash leaves in _tmp/ is purged later.
        aside = self._p(f"{TMP}/{uuid.uuid4().hex}")
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        try:
            os.rename(p, aside)
        except FileNotFoundError:
            return False  # deleted by someone else meanwhile
        _remove_tree(aside)
        return True

    def move(self, src: str, dst: str) -> None:
        source = self._p(src)
        try:
            self._replace(source, self._p(dst), dst)
        except FileNotFoundError:
            raise PathNotFound(src) from None

    def writer(self, path: str, append: bool) -> FileWriter:
        try:
            return FileWriter(self._p(path), append)
        except OSError as e:
            if too_long(e) and not append:
                raise refuse_too_long(path) from None
            if _absent(e):
                raise PathNotFound(path) from None
            raise

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        try:
            f = open(self._p(path), "rb")  # noqa: SIM115 (the caller closes it)
        except OSError as e:
            if _absent(e):
                raise PathNotFound(path) from None
            raise
        if offset:
            with contextlib.suppress(OSError):
                f.seek(offset)
        return f

    def try_lock(self, path: str) -> _FileLock | None:
        p = self._p(path)
        while True:
            try:
                # O_CREAT without creating directories: a lock file appears only in a directory that exists.
                fd = os.open(p, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                if _absent(e):
                    raise PathNotFound(path) from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            # The holder we waited for may have removed the directory before letting go: the file we locked is
            # then no longer the one at `path`.
            try:
                now = os.stat(p)
            except FileNotFoundError:
                os.close(fd)
                raise PathNotFound(path) from None
            held = os.fstat(fd)
            if (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                return _FileLock(fd)
            os.close(fd)

    def local_path(self, path: str) -> Path:
        return Path(self._p(path))

    def touch(self, path: str) -> None:
        try:
            os.utime(self._p(path))
        except OSError as e:
            if not _absent(e):
                raise
