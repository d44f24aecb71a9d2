"""Upload sessions run one request at a time, a commit ends them, and a committed blob never changes size."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator

import pytest

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.driver import Driver, Lock, LockService, PathNotFound
from k3sreg.storage.memory import MemoryDriver
from k3sreg.storage.purge import purge_uploads
from k3sreg.storage.store import Store
from k3sreg.storage.uploads import UploadSessions
from tests.unit.storage.test_store import push_blob

DATA = os.urandom(19_000)


def test_an_append_holds_its_session(driver: Driver) -> None:
    """While a chunk is being appended, every other request on the session (any process) is told it is busy."""
    # Two stores on one driver: two worker processes.
    one, two = UploadSessions(BlobStore(driver)), UploadSessions(BlobStore(driver))
    uuid = one.create("r")
    appender = one.begin_append("r", uuid, 0)
    appender.write(DATA)
    for store in (one, two):
        for op in (store.size, store.cancel, lambda r, u, s=store: s.begin_append(r, u, None),
                   lambda r, u, s=store: s.commit(r, u, Digest.of(DATA))):
            with pytest.raises(errors.UploadBusy) as e:
                op("r", uuid)
            assert (e.value.status, e.value.code) == (409, "BLOB_UPLOAD_INVALID")
    assert appender.finish() == len(DATA)
    assert two.size("r", uuid) == len(DATA)


def test_commit_ends_the_session_for_later_requests(driver: Driver) -> None:
    """After a commit, any request on the session, from any process, is BLOB_UPLOAD_UNKNOWN."""
    one, two = UploadSessions(BlobStore(driver)), UploadSessions(BlobStore(driver))
    uuid = one.create("r")
    a = one.begin_append("r", uuid, 0)
    a.write(DATA)
    a.finish()
    one.commit("r", uuid, Digest.of(DATA))
    for store in (one, two):
        for op in (store.size, store.cancel, lambda r, u, s=store: s.begin_append(r, u, None)):
            with pytest.raises(errors.BlobUploadUnknown):
                op("r", uuid)
    assert driver.list(paths.uploads("r")) == []


def test_a_waiter_finds_the_session_gone(driver: Driver) -> None:
    """A lock taken after its holder ended the session is refused: the lock lives and dies with its directory."""
    uploads = UploadSessions(BlobStore(driver))
    uuid = uploads.create("r")
    assert isinstance(driver, LockService)
    held = driver.try_lock(paths.upload_lock("r", uuid))
    assert held is not None and driver.try_lock(paths.upload_lock("r", uuid)) is None
    driver.delete(paths.upload_dir("r", uuid))
    held.release()
    with pytest.raises(PathNotFound):
        driver.try_lock(paths.upload_lock("r", uuid))
    assert driver.list(paths.uploads("r")) == []


def test_abort_undoes_the_request_and_lets_go(driver: Driver) -> None:
    """A failed append is cut back to the session's size before it, and the session is free again."""
    uploads = UploadSessions(BlobStore(driver))
    uuid = uploads.create("r")
    a = uploads.begin_append("r", uuid, 0)
    a.write(b"kept")
    a.finish()
    b = uploads.begin_append("r", uuid, 4)
    b.write(b"dropped")
    b.abort()
    b.abort()
    assert uploads.size("r", uuid) == 4
    assert uploads.commit("r", uuid, Digest.of(b"kept")).size == 4


def test_blob_whose_size_changed_is_not_served(driver: Driver) -> None:
    """A committed blob that grew after its commit is unknown everywhere; pushing the content again repairs it."""
    uploads = UploadSessions(BlobStore(driver))
    d = push_blob(uploads, "r", DATA)
    w = driver.writer(paths.blob_data(d), append=True)  # what a stale handle did before sessions were locked
    w.write(b"x" * 100)
    w.close()
    with pytest.raises(errors.BlobUnknown):
        uploads.blobs.stat("r", d)
    assert uploads.blobs.stat_global(d) is None and uploads.blobs.mount("other", d, None) is None
    assert push_blob(uploads, "again", DATA) == d
    assert uploads.blobs.stat("r", d).size == len(DATA)
    assert driver.get_content(paths.blob_data(d)) == DATA


def test_blob_without_size_record_is_served(driver: Driver) -> None:
    """A blob written by Distribution (no size record beside it) is served as it is."""
    uploads = UploadSessions(BlobStore(driver))
    d = Digest.of(DATA)
    driver.put_content(paths.blob_data(d), DATA)
    uploads.blobs.link("r", d)
    assert uploads.blobs.stat("r", d).size == len(DATA)


def test_adopted_and_small_blobs_record_their_size(driver: Driver) -> None:
    """Blobs installed by a cache fill and manifests stored whole are size-checked like uploads."""
    uploads = UploadSessions(BlobStore(driver))
    d = Digest.of(DATA)
    driver.put_content(f"{paths.TMP}/fill", DATA)
    uploads.blobs.adopt(f"{paths.TMP}/fill", d, len(DATA))
    small = Digest.of(b"{}")
    uploads.blobs.put_small(small, b"{}")
    for digest, size in ((d, len(DATA)), (small, 2)):
        assert driver.stat(paths.blob_size_marker(digest, size)) is not None
        driver.put_content(paths.blob_data(digest), driver.get_content(paths.blob_data(digest))[:1])
        assert uploads.blobs.stat_global(digest) is None


async def stalled_body(started: asyncio.Event, release: asyncio.Event) -> AsyncIterator[bytes]:
    """50 bytes, a pause until `release` is set, then 50 more: a PATCH whose client holds its body. `started`
    is set once the append has begun (it holds the session from then on)."""
    started.set()
    yield b"a" * 50
    await release.wait()
    yield b"b" * 50


async def test_commit_waits_for_the_append_in_progress(driver: Driver) -> None:
    """A commit waits for a PATCH of its session in progress (or times out as busy), never storing its bytes."""
    store = Store(driver, session_wait=30)
    uuid = await store.create_upload("r")
    await store.append_upload("r", uuid, _once(DATA))
    started, release = asyncio.Event(), asyncio.Event()
    patch = asyncio.create_task(store.append_upload("r", uuid, stalled_body(started, release), None, 100))
    await started.wait()
    commit = asyncio.create_task(store.commit_upload("r", uuid, Digest.of(DATA)))
    await asyncio.sleep(0.2)  # time for a commit that does not wait to go wrong
    assert not commit.done()
    release.set()
    assert await patch == len(DATA) + 100
    with pytest.raises(errors.DigestInvalid):
        await commit
    assert store.blobs.stat_global(Digest.of(DATA)) is None
    with pytest.raises(errors.BlobUploadUnknown):
        await store.append_upload("r", uuid, _once(b"late"))

    impatient = Store(driver, session_wait=0.1)
    uuid = await impatient.create_upload("r")
    started, release = asyncio.Event(), asyncio.Event()
    patch = asyncio.create_task(impatient.append_upload("r", uuid, stalled_body(started, release), None, 100))
    await started.wait()
    with pytest.raises(errors.UploadBusy):
        await impatient.commit_upload("r", uuid, Digest.of(DATA))
    release.set()
    assert await patch == 100
    store.close()
    impatient.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_purge_spares_a_session_in_use(driver: Driver) -> None:
    """Upload purging leaves an old session alone while a request holds it, and removes it once let go."""
    uploads = UploadSessions(BlobStore(driver))
    uuid = uploads.create("r")
    driver.put_content(paths.upload_startedat("r", uuid), b"2020-01-01T00:00:00Z")
    appender = uploads.begin_append("r", uuid, 0)
    assert purge_uploads(driver, age=3600) == []
    appender.finish()
    assert purge_uploads(driver, age=3600) == [f"r/{uuid}"]
    assert driver.list(paths.uploads("r")) == []


class _SlowLocks(MemoryDriver):
    """A memory driver whose try_lock waits for `go`: a thread caught in the middle of taking a session."""

    def __init__(self) -> None:
        super().__init__()
        self.go, self.entered = threading.Event(), threading.Event()

    def try_lock(self, path: str) -> Lock | None:
        self.entered.set()
        self.go.wait(10)
        return super().try_lock(path)


async def test_append_cancelled_while_taking_its_session_lets_it_go() -> None:
    """A PATCH whose client vanishes while its session is being taken does not leave the session locked."""
    driver = _SlowLocks()
    driver.go.set()
    store = Store(driver)
    uuid = await store.create_upload("r")
    driver.go.clear()
    patch = asyncio.create_task(store.append_upload("r", uuid, _once(b"data")))
    await asyncio.to_thread(driver.entered.wait, 10)
    patch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await patch
    driver.go.set()
    assert await store.upload_size("r", uuid) == 0
    store.close()
