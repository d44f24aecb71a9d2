"""The drivers' own wall: no path leaves the storage root, and names too long for the file system are 4xx."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from k3sreg import errors
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.driver import Driver, LocalFiles, LockService, PathNotFound, storage_error
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.memory import MemoryDriver
from k3sreg.storage.uploads import UploadSessions

BAD_PATHS = ["", "/etc/passwd", "../canary", "a/../../canary", "a/..", "..", "a/./b", ".", "a//b", "a/",
             "a\x00b", "docker/registry/v2/repositories/r/_uploads/\x00/data"]
OPERATIONS: dict[str, Callable[[Any, str], Any]] = {
    "get_content": lambda d, p: d.get_content(p),
    "put_content": lambda d, p: d.put_content(p, b"x"),
    "stat": lambda d, p: d.stat(p),
    "list": lambda d, p: d.list(p),
    "walk": lambda d, p: list(d.walk(p)),
    "delete": lambda d, p: d.delete(p),
    "move-from": lambda d, p: d.move(p, "ok/dst"),
    "move-to": lambda d, p: d.move("ok/src", p),
    "writer": lambda d, p: d.writer(p, append=False),
    "appender": lambda d, p: d.writer(p, append=True),
    "reader": lambda d, p: d.reader(p),
}
LOCKS: dict[str, Callable[[Any, str], Any]] = {"try_lock": lambda d, p: d.try_lock(p)}
LOCAL_FILES: dict[str, Callable[[Any, str], Any]] = {
    "touch": lambda d, p: d.touch(p),
    "local_path": lambda d, p: d.local_path(p),
}


def _driver(kind: str, root: Path) -> Driver:
    """The driver `kind`, the filesystem one rooted at `root`, with a file at ok/src."""
    d: Driver = FilesystemDriver(root) if kind == "filesystem" else MemoryDriver()
    d.put_content("ok/src", b"source")
    return d


@pytest.fixture(params=["filesystem", "inmemory"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    """Each driver, the filesystem one rooted at tmp_path/root, with a file at ok/src."""
    yield _driver(request.param, tmp_path / "root")


# Every operation of every driver that has it: the optional protocols only where a driver implements them.
CASES = [(kind, op) for kind in ("filesystem", "inmemory") for op in [*OPERATIONS, *LOCKS]] + \
    [("filesystem", op) for op in LOCAL_FILES]


@pytest.mark.parametrize(("kind", "op"), CASES)
@pytest.mark.parametrize("bad", BAD_PATHS, ids=repr)
def test_paths_that_could_leave_the_root_are_refused(kind: str, tmp_path: Path, op: str, bad: str) -> None:
    """Every driver operation refuses empty, absolute, '.'/'..', '//' and NUL paths with a 400 NAME_INVALID."""
    driver = _driver(kind, tmp_path / "root")
    (tmp_path / "canary").write_bytes(b"outside")
    with pytest.raises(errors.StoragePathInvalid) as e:
        {**OPERATIONS, **LOCKS, **LOCAL_FILES}[op](driver, bad)
    assert e.value.status == 400 and e.value.code == "NAME_INVALID"
    assert (tmp_path / "canary").read_bytes() == b"outside"
    assert driver.get_content("ok/src") == b"source"


def test_optional_protocols_are_where_they_belong(tmp_path: Path) -> None:
    """Both drivers are a LockService; only the filesystem driver has LocalFiles (sendfile, mtimes)."""
    fs, mem = FilesystemDriver(tmp_path), MemoryDriver()
    assert isinstance(fs, LockService) and isinstance(fs, LocalFiles)
    assert isinstance(mem, LockService) and not isinstance(mem, LocalFiles)


def test_dots_inside_a_name_are_fine(driver: Driver) -> None:
    """'..' inside a segment (a valid tag such as 'v1..2') and names starting with '_' are ordinary paths."""
    for path in ("r/_manifests/tags/v1..2/current/link", "r/_layers/a.b/link", "r/x./y"):
        driver.put_content(path, b"ok")
        assert driver.get_content(path) == b"ok"
        assert driver.delete(path)


LONG = "a" * 300


def test_too_long_names_do_not_exist(tmp_path: Path) -> None:
    """A name longer than the file system allows reads as absent (it cannot exist) instead of raising OSError."""
    fs = FilesystemDriver(tmp_path)
    path = f"{paths.uploads('r')}/{LONG}/data"
    assert fs.stat(path) is None and fs.list(path) == [] and fs.delete(path) is False
    fs.touch(path)
    for read in (fs.get_content, fs.reader, fs.try_lock, lambda p: fs.writer(p, append=True)):
        with pytest.raises(PathNotFound):
            read(path)


def test_too_long_names_cannot_be_written(tmp_path: Path) -> None:
    """Writing a name longer than the file system allows is 400 NAME_INVALID, and leaves nothing behind."""
    fs = FilesystemDriver(tmp_path / "root")
    path = f"{paths.repo(LONG)}/_layers/link"
    with pytest.raises(errors.StoragePathInvalid):
        fs.put_content(path, b"x")
    with pytest.raises(errors.StoragePathInvalid):
        fs.writer(path, append=False)
    fs.put_content(f"{paths.TMP}/staged", b"x")
    with pytest.raises(errors.StoragePathInvalid):
        fs.move(f"{paths.TMP}/staged", path)
    assert fs.list(paths.TMP) == ["staged"] and fs.list(paths.REPOSITORIES) == []


def test_store_answers_too_long_upload_ids_and_names(tmp_path: Path) -> None:
    """Upload ids of 300 chars, with NUL or '..' are BLOB_UPLOAD_UNKNOWN; an unstorable repo name NAME_INVALID."""
    uploads = UploadSessions(BlobStore(FilesystemDriver(tmp_path)))
    uploads.create("r")
    for op in (uploads.size, uploads.cancel, lambda r, u: uploads.begin_append(r, u, None)):
        for uuid in (LONG, "a\x00b", "..", "../../x"):
            with pytest.raises(errors.BlobUploadUnknown):
                op("r", uuid)
    with pytest.raises(errors.NameInvalid):
        uploads.create(LONG)
    assert uploads.driver.list(paths.REPOSITORIES) == ["r"]


@pytest.mark.parametrize(("code", "status", "oci"), [
    (errno.ENOSPC, 507, "UNAVAILABLE"), (errno.EDQUOT, 507, "UNAVAILABLE"), (errno.EIO, 503, "UNAVAILABLE"),
    (errno.EROFS, 503, "UNAVAILABLE"), (errno.ENAMETOOLONG, 400, "NAME_INVALID")])
def test_storage_failures_become_api_errors(code: int, status: int, oci: str) -> None:
    """A full, failing or read-only disk and over-long names map to OCI errors; other OSErrors stay bugs."""
    mapped = storage_error(OSError(code, "boom"))
    assert mapped is not None and (mapped.status, mapped.code) == (status, oci)
    assert storage_error(OSError(errno.EACCES, "denied")) is None
