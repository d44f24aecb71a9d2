"""The contract every storage driver keeps, run against each driver (as Distribution runs its driver suites).

A new driver joins by adding a factory to DRIVERS (an S3 driver: one against a local object store, with its own
root per call), and the memory it may hold per stored object to RESIDENT_COPIES; LOCKING lists the drivers that
are also a LockService. Everything else here applies to it unchanged.
"""

from __future__ import annotations

import hashlib
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from k3sreg import errors
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.blobwriter import BlobWriter, HashState
from k3sreg.storage.driver import Driver, LockService, PathNotFound
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.memory import MemoryDriver
from k3sreg.storage.uploads import UploadSessions
from tests.unit.storage.faults import every_fault
from tests.unit.storage.test_store import image, push_blob

DRIVERS: dict[str, Callable[[Path], Driver]] = {
    "filesystem": FilesystemDriver,
    "inmemory": lambda _root: MemoryDriver(),
}
# How many copies of a stored object a driver keeps in this process while it streams it (the memory driver
# stores objects in memory, and copies once when a writer publishes).
RESIDENT_COPIES = {"filesystem": 0, "inmemory": 2}
LOCKING = ["filesystem", "inmemory"]


@pytest.fixture(params=list(DRIVERS))
def kind(request: pytest.FixtureRequest) -> str:
    """The name of each driver in turn."""
    return str(request.param)


@pytest.fixture
def make(kind: str, tmp_path: Path) -> Callable[[], Driver]:
    """A factory of fresh, empty drivers of `kind` (each with its own root)."""
    roots = iter(range(1 << 30))
    return lambda: DRIVERS[kind](tmp_path / f"root{next(roots)}")


@pytest.fixture
def driver(make: Callable[[], Driver]) -> Iterator[Driver]:
    """A fresh driver of each kind."""
    yield make()


# --- write, read, stat, list, walk, move, delete ------------------------------------------------------------
def test_put_then_get_round_trips_and_overwrites(driver: Driver) -> None:
    """put_content then get_content gives the bytes back; a second put replaces them; empty content is content."""
    driver.put_content("a/b/c", b"first")
    assert driver.get_content("a/b/c") == b"first"
    driver.put_content("a/b/c", b"second, longer")
    assert driver.get_content("a/b/c") == b"second, longer"
    driver.put_content("a/empty", b"", sync=False)
    assert driver.get_content("a/empty") == b""
    assert driver.stat("a/empty") is not None


def test_reader_starts_at_any_offset(driver: Driver) -> None:
    """reader(offset) reads from there to the end; at or past the end it reads nothing."""
    data = bytes(range(256)) * 64
    driver.put_content("blob", data)
    for offset in (0, 1, 255, 8000, len(data) - 1):
        with driver.reader("blob", offset) as f:
            assert f.read() == data[offset:]
    with driver.reader("blob", 100) as f:
        assert f.read(10) == data[100:110] and f.read(5) == data[110:115]
    for offset in (len(data), len(data) + 100):
        with driver.reader("blob", offset) as f:
            assert f.read() == b""


def test_stat_tells_files_from_directories(driver: Driver) -> None:
    """stat gives a file's size and a recent mtime, marks directories as such, and None for nothing."""
    before = time.time()
    driver.put_content("d/file", b"12345")
    info = driver.stat("d/file")
    assert info is not None and info.size == 5 and not info.is_dir
    assert before - 5 <= info.mtime <= time.time() + 5
    folder = driver.stat("d")
    assert folder is not None and folder.is_dir
    assert driver.stat("d/nothing") is None and driver.stat("nothing") is None


def test_list_names_direct_children_only(driver: Driver) -> None:
    """list gives the names of files and directories right under a directory, not deeper ones."""
    for p in ("top/a", "top/b/c", "top/b/d/e", "top/c", "topx/f"):
        driver.put_content(p, b"x")
    assert sorted(driver.list("top")) == ["a", "b", "c"]
    assert sorted(driver.list("top/b")) == ["c", "d"]
    assert driver.list("top/a/nothing") == [] and driver.list("elsewhere") == []


def test_walk_finds_every_file_below(driver: Driver) -> None:
    """walk yields every file below a directory at any depth, and no directories."""
    files = ["w/a", "w/b/c", "w/b/d/e", "w/b/d/f"]
    for p in [*files, "wx/g", "other"]:
        driver.put_content(p, p.encode())
    assert sorted(driver.walk("w")) == files
    assert sorted(driver.walk("w/b/d")) == ["w/b/d/e", "w/b/d/f"]
    assert list(driver.walk("missing")) == []


def test_move_replaces_and_creates_directories(driver: Driver) -> None:
    """move puts the source at the destination (replacing what was there, creating its directory) and
    leaves nothing at the source."""
    driver.put_content("stage/one", b"new")
    driver.put_content("final/x", b"old")
    driver.move("stage/one", "final/x")
    assert driver.get_content("final/x") == b"new" and driver.stat("stage/one") is None
    driver.put_content("stage/two", b"two")
    driver.move("stage/two", "deep/er/than/before")
    assert driver.get_content("deep/er/than/before") == b"two"


def test_delete_removes_files_and_trees_and_nothing_else(driver: Driver) -> None:
    """delete removes a file or a whole tree (True), leaves names that only share a prefix, and says False for
    nothing."""
    for p in ("t/a", "t/b/c", "t/b/d/e", "tb/keep", "t-keep"):
        driver.put_content(p, b"x")
    assert driver.delete("t/a") is True and driver.stat("t/a") is None
    assert driver.delete("t") is True
    assert driver.stat("t") is None and list(driver.walk("t")) == []
    assert driver.get_content("tb/keep") == b"x" and driver.get_content("t-keep") == b"x"
    assert driver.delete("t") is False and driver.delete("never/was") is False


def test_missing_paths_are_not_found_everywhere(driver: Driver) -> None:
    """Reading, appending to or moving a path that does not exist raises PathNotFound; stat, list, walk and
    delete answer None, [], nothing and False."""
    for op in (lambda: driver.get_content("no/such"), lambda: driver.reader("no/such"),
               lambda: driver.reader("no/such", 10), lambda: driver.writer("no/such", append=True),
               lambda: driver.move("no/such", "dst")):
        with pytest.raises(PathNotFound):
            op()
    assert driver.stat("no/such") is None and driver.list("no/such") == []
    assert list(driver.walk("no/such")) == [] and driver.delete("no/such") is False
    assert driver.stat("dst") is None and driver.stat("no") is None


ODD_NAMES = ["with space", "ünïcödé", "colon:and@at", "plus+equals=comma,", "v1..2", "_leading", "-dash",
             ".dotted", "percent%2F", "x" * 200, "semi;quote'", "tag_1.0-rc.1"]


@pytest.mark.parametrize("name", ODD_NAMES, ids=repr)
def test_odd_names_are_ordinary_names(driver: Driver, name: str) -> None:
    """Names with spaces, non-ASCII, punctuation, inner dots or 200 characters are stored, listed, walked,
    moved and deleted like any other."""
    path = f"odd/{name}/{name}"
    driver.put_content(path, name.encode())
    assert driver.get_content(path) == name.encode()
    assert driver.list("odd") == [name] and driver.list(f"odd/{name}") == [name]
    assert list(driver.walk("odd")) == [path]
    driver.move(path, f"odd/{name}/moved")
    assert driver.get_content(f"odd/{name}/moved") == name.encode()
    assert driver.delete(f"odd/{name}") and driver.list("odd") == []


# --- writers --------------------------------------------------------------------------------------------
def test_writer_creates_appends_and_never_resurrects(driver: Driver) -> None:
    """A new writer creates (or empties) a file; an appending one adds to it and counts its size; appending to
    a file someone removed fails instead of creating it again."""
    w = driver.writer("up/data", append=False)
    w.write(b"abc")
    w.write(b"def")
    w.close(sync=True)
    w.close()  # a second close does nothing
    assert driver.get_content("up/data") == b"abcdef"
    a = driver.writer("up/data", append=True)
    assert a.size == 6
    a.write(b"gh")
    assert a.size == 8
    a.close()
    assert driver.get_content("up/data") == b"abcdefgh"
    driver.writer("up/data", append=False).close()
    assert driver.get_content("up/data") == b""
    driver.delete("up")
    with pytest.raises(PathNotFound):
        driver.writer("up/data", append=True)
    assert driver.stat("up/data") is None


def test_cancel_takes_back_what_the_writer_wrote(driver: Driver) -> None:
    """cancel() leaves an appended file as it was before the writer, and none of a new writer's bytes."""
    driver.put_content("c/data", b"kept")
    a = driver.writer("c/data", append=True)
    a.write(b" dropped")
    a.cancel()
    assert driver.get_content("c/data") == b"kept"
    n = driver.writer("c/new", append=False)
    n.write(b"dropped")
    n.cancel()
    assert driver.stat("c/new") is None or driver.get_content("c/new") == b""
    closed = driver.writer("c/data", append=True)
    closed.write(b"!")
    closed.close()
    closed.cancel()  # a closed writer stays as it is
    assert driver.get_content("c/data") == b"kept!"


def test_large_object_streams_without_being_held(kind: str, driver: Driver) -> None:
    """A 48 MiB object written from a generator and read back in pieces never has more of it in memory than
    the driver keeps resident (nothing, for drivers that store elsewhere)."""
    size, piece = 48 << 20, 1 << 20
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        w = driver.writer("big/data", append=False)
        for i in range(size // piece):
            chunk = bytes([i % 251]) * piece
            expected.update(chunk)
            w.write(chunk)
            del chunk
        w.close(sync=True)
        got = hashlib.sha256()
        with driver.reader("big/data") as f:
            while data := f.read(piece):
                got.update(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.digest() == expected.digest()
    assert driver.stat("big/data") is not None and driver.stat("big/data").size == size  # type: ignore[union-attr]
    assert peak < RESIDENT_COPIES[kind] * size + (8 << 20), f"peak {peak >> 20} MiB"


# --- concurrency ----------------------------------------------------------------------------------------
def _contents(n: int) -> dict[int, bytes]:
    """n distinct contents, told apart by their length."""
    return {len(c): c for c in (bytes([i + 1]) * (4000 + 997 * i) for i in range(n))}


def _run_threads(targets: list[Callable[[], None]]) -> None:
    failures: list[BaseException] = []

    def guard(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:  # reported below, in the test's thread
            failures.append(e)

    threads = [threading.Thread(target=guard, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []


def test_concurrent_puts_to_one_path_leave_one_whole_content(driver: Driver) -> None:
    """Writers racing to put one path, while a reader reads it, never make anyone see a mix or a part: every
    read and the final content are one writer's whole bytes."""
    contents = _contents(6)
    done = threading.Event()
    seen: list[bytes] = []

    def writer(c: bytes) -> Callable[[], None]:
        def run() -> None:
            for _ in range(40):
                driver.put_content("race/link", c, sync=False)
        return run

    def reader() -> None:
        while not done.is_set():
            try:
                got = driver.get_content("race/link")
            except PathNotFound:
                continue
            seen.append(got)

    read = threading.Thread(target=reader)
    read.start()
    try:
        _run_threads([writer(c) for c in contents.values()])
    finally:
        done.set()
        read.join(30)
    final = driver.get_content("race/link")
    assert seen and all(contents.get(len(got)) == got for got in [*seen, final])


def test_concurrent_staged_writes_moved_to_one_path_leave_one_whole_content(driver: Driver) -> None:
    """Writers that each stage their bytes and move them to the same path leave exactly one of them there."""
    contents = _contents(6)

    def stage_and_move(i: int, c: bytes) -> Callable[[], None]:
        def run() -> None:
            for round_ in range(20):
                staging = f"stage/{i}-{round_}"
                w = driver.writer(staging, append=False)
                for start in range(0, len(c), 1000):
                    w.write(c[start:start + 1000])
                w.close()
                driver.move(staging, "final/blob")
        return run

    _run_threads([stage_and_move(i, c) for i, c in enumerate(contents.values())])
    final = driver.get_content("final/blob")
    assert contents.get(len(final)) == final
    assert list(driver.walk("stage")) == []


# --- locks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("locking", LOCKING)
def test_locks_are_exclusive_and_die_with_their_directory(locking: str, tmp_path: Path) -> None:
    """try_lock gives one holder at a time, is free again once released, and refuses a lock whose directory
    is gone."""
    locks = DRIVERS[locking](tmp_path)
    assert isinstance(locks, LockService)
    locks.put_content("s/1/data", b"")
    held = locks.try_lock("s/1/lock")
    assert held is not None and locks.try_lock("s/1/lock") is None
    held.release()
    again = locks.try_lock("s/1/lock")
    assert again is not None
    again.release()
    locks.delete("s/1")
    with pytest.raises(PathNotFound):
        locks.try_lock("s/1/lock")


# --- atomicity: a driver that fails at every step in turn (`faults`) -------------------------------------
DATA = bytes(range(256)) * 40  # 10 KiB


def test_staged_write_and_move_is_all_or_nothing(make: Callable[[], Driver]) -> None:
    """Staging bytes and moving them into place, failing at each step, never leaves a part at the final path."""
    def act(d: Any) -> None:
        w = d.writer("stage/x", append=False)
        w.write(DATA[:5000])
        w.write(DATA[5000:])
        w.close(sync=True)
        d.move("stage/x", "final/x")

    def check(d: Driver, done: bool) -> None:
        info = d.stat("final/x")
        assert (info is None and not done) or d.get_content("final/x") == DATA

    assert every_fault(make, lambda d: None, act, check) >= 5


def test_put_content_failing_keeps_the_old_content(make: Callable[[], Driver]) -> None:
    """A put that fails leaves the previous content whole."""
    def check(d: Driver, done: bool) -> None:
        assert d.get_content("p/link") == (b"new content" if done else b"old")

    every_fault(make, lambda d: d.put_content("p/link", b"old"), lambda d: d.put_content("p/link", b"new content"),
                 check)


def _blob_state(d: Driver, repo: str, data: bytes, done: bool) -> None:
    """Blob `data` is either absent from `repo` or there whole, in the store and linked; never a part."""
    blobs, digest = BlobStore(d), Digest.of(data)
    raw = d.stat(paths.blob_data(digest))
    if raw is not None:
        assert d.get_content(paths.blob_data(digest)) == data
    try:
        info = blobs.stat(repo, digest)
    except errors.BlobUnknown:
        assert not done
        return
    assert info.size == len(data) and d.get_content(info.path) == data


def test_upload_failing_at_any_step_leaves_no_partial_blob(make: Callable[[], Driver]) -> None:
    """An upload (open, two chunks, commit) that fails at any step leaves the blob absent or whole."""
    def act(d: Any) -> None:
        uploads = UploadSessions(BlobStore(d))
        uuid = uploads.create("r")
        for start, part in ((0, DATA[:6000]), (6000, DATA[6000:])):
            appender = uploads.begin_append("r", uuid, start)
            try:
                appender.write(part)
            except BaseException:
                appender.abort()
                raise
            appender.finish()
        uploads.commit("r", uuid, Digest.of(DATA))

    assert every_fault(make, lambda d: None, act, lambda d, done: _blob_state(d, "r", DATA, done)) >= 8


def test_blob_writer_commit_failing_at_any_step_leaves_no_partial_blob(make: Callable[[], Driver]) -> None:
    """A BlobWriter that stages, then commits, failing at any step, leaves the blob absent or whole."""
    def act(d: Any) -> None:
        blobs = BlobStore(d)
        writer = BlobWriter(blobs, paths.tmp("staged"), d.writer(paths.tmp("staged"), append=False), HashState())
        try:
            writer.write(DATA[:3000])
            writer.write(DATA[3000:])
            writer.commit(Digest.of(DATA), "r")
        except BaseException:
            writer.cancel()
            raise

    assert every_fault(make, lambda d: None, act, lambda d, done: _blob_state(d, "r", DATA, done)) >= 5


def test_manifest_put_failing_at_any_step_is_all_or_nothing(make: Callable[[], Driver]) -> None:
    """A manifest put that fails at any step leaves its tag and digest either unknown or naming the whole
    manifest; a listed tag always resolves."""
    doc: dict[str, bytes] = {}

    def prepare(d: Driver) -> None:
        uploads = UploadSessions(BlobStore(d))
        doc["data"] = image(push_blob(uploads, "r", b"{}"), [push_blob(uploads, "r", DATA)])

    def act(d: Any) -> None:
        ManifestStore(BlobStore(d)).put("r", "v1", doc["data"], mt.OCI_MANIFEST)

    def check(d: Driver, done: bool) -> None:
        store = ManifestStore(BlobStore(d))
        digest = Digest.of(doc["data"])
        try:
            tags = store.tags.list("r")
        except errors.NameUnknown:
            tags = []
        for ref in ("v1", str(digest)):
            try:
                got = store.get("r", ref)
            except errors.ManifestUnknown:
                assert not done and (ref != "v1" or "v1" not in tags)
                continue
            assert got.data == doc["data"] and got.digest == digest
        if done:
            assert tags == ["v1"]

    assert every_fault(make, prepare, act, check) >= 4
