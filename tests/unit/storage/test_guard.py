"""The guard between writes and sweeps (storage.guard), made deterministic: a driver that stops one chosen call
until the test lets it go puts a write or a sweep exactly where the race is."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.gc import Collector
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.mark import Mark
from k3sreg.storage.uploads import UploadSessions
from tests.unit.storage.test_store import image, push_blob


class Stopping:
    """A filesystem driver whose `op` stops, the first time its path matches, until `go` is set."""

    def __init__(self, inner: FilesystemDriver, op: str, match: Callable[[str], bool]):
        self.inner, self.op, self.match = inner, op, match
        self.reached, self.go = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.op:
            return attr

        def stopping(path: str, *args: Any, **kwargs: Any) -> Any:
            if self.match(path) and not self.reached.is_set():
                self.reached.set()
                assert self.go.wait(10), "the test never let the call go"
            return attr(path, *args, **kwargs)

        return stopping


class Side:
    """A writer's or a sweeper's view of one store on `driver` (the lock service is the real filesystem's)."""

    def __init__(self, driver: Any, locks: FilesystemDriver):
        self.blobs = BlobStore(driver, locks)
        self.uploads, self.manifests = UploadSessions(self.blobs, locks), ManifestStore(self.blobs)


@pytest.fixture
def fs(tmp_path: Path) -> FilesystemDriver:
    return FilesystemDriver(tmp_path)


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(2) as p:
        yield p


def _old_image(side: Side, repo: str) -> tuple[bytes, Digest, Digest]:
    """Push a config and a layer to `repo` with no manifest yet; (the manifest to push later, config, layer)."""
    cfg, layer = push_blob(side.uploads, repo, b"{}"), push_blob(side.uploads, repo, b"layer")
    return image(cfg, [layer]), cfg, layer


def test_a_sweep_waits_out_a_manifest_put_that_holds_its_blobs(fs: FilesystemDriver, pool: Any) -> None:
    """A sweep that reaches a layer while a manifest PUT holds it (checked, not yet linked) leaves it, and so
    does a later sweep with the same stale mark: the manifest is stored with every blob present."""
    writer = Side(Stopping(fs, "put_content", lambda p: "/_manifests/revisions/" in p), fs)
    sweeper = Side(fs, fs)
    doc, cfg, layer = _old_image(sweeper, "r")
    cutoff = sweeper.blobs.guard.clock()
    stale = Mark()  # taken before the manifest existed: it needs nothing
    put = pool.submit(writer.manifests.put, "r", "1", doc, None)
    assert writer.blobs.driver.reached.wait(10)
    assert sweeper.blobs.guard.sweep(layer, cutoff) is None  # busy
    writer.blobs.driver.go.set()
    stored = put.result(10)
    assert all(sweeper.blobs.guard.sweep(d, cutoff) is None for d in (cfg, layer) if not stale.kept(d))
    assert sweeper.manifests.get("r", "1").digest == stored.digest
    assert sweeper.blobs.stat("r", layer).size == len(b"layer")


def test_a_manifest_put_that_waits_for_a_sweep_finds_the_blob_gone(fs: FilesystemDriver, pool: Any) -> None:
    """A manifest PUT that needs a blob a sweep is removing waits for it, then answers MANIFEST_BLOB_UNKNOWN
    and stores nothing: no revision, no tag."""
    sweeper = Side(Stopping(fs, "delete", lambda p: p.startswith(paths.BLOBS)), fs)
    writer = Side(fs, fs)
    doc, _, layer = _old_image(writer, "r")
    cutoff = writer.blobs.guard.clock()
    sweep = pool.submit(sweeper.blobs.guard.sweep, layer, cutoff)
    assert sweeper.blobs.driver.reached.wait(10)
    put = pool.submit(writer.manifests.put, "r", "1", doc, None)
    with pytest.raises(TimeoutError):
        put.result(0.3)  # waiting for the layer's lock
    sweeper.blobs.driver.go.set()
    assert sweep.result(10) == len(b"layer")
    with pytest.raises(errors.ManifestBlobUnknown):
        put.result(10)
    assert writer.manifests.revisions("r") == [] and fs.list(paths.tags("r")) == []


def test_a_manifest_pushed_after_the_mark_keeps_its_blobs(fs: FilesystemDriver) -> None:
    """A whole collection whose mark came before a manifest PUT removes nothing that manifest needs."""
    side = Side(fs, fs)
    doc, cfg, layer = _old_image(side, "r")
    collector = Collector(side.manifests)
    original = collector._sweep

    def sweep_after_a_push(cutoff: float, mark: Mark, report: Any) -> list[Digest]:
        side.manifests.put("r", "1", doc, None)
        return original(cutoff, mark, report)

    collector._sweep = sweep_after_a_push  # type: ignore[method-assign]
    report = collector.run()
    assert report.blobs_removed == 0
    assert side.blobs.stat("r", cfg) and side.blobs.stat("r", layer)


def test_a_write_killed_after_its_manifest_still_protects_it(fs: FilesystemDriver) -> None:
    """A PUT that dies between writing its manifest and its second stamp leaves the first: the sweep of a
    collection with a delay, whose mark missed the manifest, leaves its blobs."""
    doc, cfg, layer = _old_image(Side(fs, fs), "r")
    stamps = {"n": 0}

    class Dying(Stopping):
        def __getattr__(self, name: str) -> Any:
            attr = getattr(self.inner, name)
            if name != "put_content":
                return attr

            def put_content(path: str, *args: Any, **kwargs: Any) -> Any:
                if path.endswith("/used") and "/_manifests/" not in path:
                    stamps["n"] += 1
                    if stamps["n"] > 3:  # config, layer, manifest: the first stamps; then the process dies
                        raise SystemExit("killed")
                return attr(path, *args, **kwargs)

            return put_content

    writer = Side(Dying(fs, "", lambda p: False), fs)
    sweeper = Side(fs, fs)
    cutoff = sweeper.blobs.guard.clock() - 60  # a collection with a delay of one minute, marked before the PUT
    with pytest.raises(SystemExit):
        writer.manifests.put("r", "1", doc, None)
    assert writer.manifests.get("r", "1")  # the manifest was written
    assert sweeper.blobs.guard.sweep(layer, cutoff) is None and sweeper.blobs.guard.sweep(cfg, cutoff) is None


def test_a_commit_of_content_being_swept_puts_its_own_bytes_in(fs: FilesystemDriver, pool: Any) -> None:
    """An upload of content whose old copy a sweep is removing waits for it, then commits its own bytes: the
    blob is in the store and linked when the upload answers."""
    sweeper = Side(Stopping(fs, "delete", lambda p: p.startswith(paths.BLOBS)), fs)
    writer = Side(fs, fs)
    layer = push_blob(writer.uploads, "old", b"layer")
    cutoff = writer.blobs.guard.clock()
    sweep = pool.submit(sweeper.blobs.guard.sweep, layer, cutoff)
    assert sweeper.blobs.driver.reached.wait(10)
    upload: Future[Digest] = pool.submit(push_blob, writer.uploads, "new", b"layer")
    with pytest.raises(TimeoutError):
        upload.result(0.3)
    sweeper.blobs.driver.go.set()
    assert sweep.result(10) == len(b"layer") and upload.result(10) == layer
    assert writer.blobs.stat("new", layer).size == len(b"layer")


def test_a_mount_of_a_blob_being_swept_fails_cleanly(fs: FilesystemDriver, pool: Any) -> None:
    """A mount that waited for a sweep of its blob answers that it cannot mount (the client uploads), and
    links nothing."""
    sweeper = Side(Stopping(fs, "delete", lambda p: p.startswith(paths.BLOBS)), fs)
    writer = Side(fs, fs)
    layer = push_blob(writer.uploads, "old", b"layer")
    sweep = pool.submit(sweeper.blobs.guard.sweep, layer, writer.blobs.guard.clock())
    assert sweeper.blobs.driver.reached.wait(10)
    mount = pool.submit(writer.blobs.mount, "new", layer, "old")
    with pytest.raises(TimeoutError):
        mount.result(0.3)
    sweeper.blobs.driver.go.set()
    assert sweep.result(10) and mount.result(10) is None
    assert fs.stat(paths.layer_link("new", layer)) is None


def test_writes_that_name_blobs_in_any_order_never_wait_for_each_other(fs: FilesystemDriver) -> None:
    """Holds are all or nothing: many threads holding overlapping sets of blobs all finish."""
    side = Side(fs, fs)
    digests = [push_blob(side.uploads, "r", bytes([i])) for i in range(6)]
    done = []

    def hold(i: int) -> None:
        for n in range(20):
            chosen = digests[i % 3:] if n % 2 else list(reversed(digests))[: 3 + i % 3]
            with side.blobs.guard.hold(chosen) as held:
                assert held.present == set(chosen)
        done.append(i)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(done) == list(range(6))


def test_a_write_gives_up_on_a_lock_nobody_lets_go(fs: FilesystemDriver) -> None:
    """A hold that waits longer than its patience answers UNAVAILABLE, holding nothing."""
    side = Side(fs, fs)
    a, b = push_blob(side.uploads, "r", b"a"), push_blob(side.uploads, "r", b"b")
    lock = side.blobs.guard.lock(paths.gc_stripe(b))
    assert lock is not None
    with pytest.raises(errors.Unavailable), side.blobs.guard.hold([a, b], patience=0.2):
        pass
    lock.release()
    with side.blobs.guard.hold([a, b]) as held:
        assert held.present == {a, b}
