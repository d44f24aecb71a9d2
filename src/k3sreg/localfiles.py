"""Local files written whole or not at all: a temporary sibling, fsync, rename. Stdlib only, for every layer
outside storage/ (whose drivers do the same for the registry's own layout).

    write_file(path, data, mode)    small files: secrets (0600), hosts.toml, manifests, index.json
    replacing(path, mode)           a file object for a stream (tar, bundle): renamed when the block ends
                                    without an error, removed when it ends with one
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def _open_new(tmp: Path, mode: int) -> BinaryIO:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)  # the umask may have taken bits away; put back exactly `mode`
    return os.fdopen(fd, "wb")


def _sync_dir(directory: Path) -> None:
    # The rename is durable only once the directory is: a crash must not bring back the old file.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_file(path: Path, data: bytes, mode: int = 0o644, *, exclusive: bool = False,
               dir_mode: int = 0o755) -> None:
    """Write `data` to `path` atomically with exactly `mode`, creating missing directories with `dir_mode`.

    With `exclusive`, raise FileExistsError instead of replacing a file that exists (first writer wins, which
    makes generating a key on first start safe when several workers start at once).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    tmp = _temporary(path)
    try:
        with _open_new(tmp, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _sync_dir(path.parent)


@contextlib.contextmanager
def replacing(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A file whose bytes replace `path` when the block ends without an error; on an error (or an interrupt)
    the temporary file is removed and `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with _open_new(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _sync_dir(path.parent)
