"""Scrub on both drivers: damaged blobs (bytes flipped, cut, gone), quarantine, manifests missing what they
need, tags naming nothing, the pull-through cache's repositories, and passes that stop and go on."""

from __future__ import annotations

import threading

from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.scrub import Report, Scrubber, last_report, save_report
from tests.unit.storage.pushes import Store


def _damage(store: Store, d: Digest, data: bytes) -> None:
    """Replace blob `d`'s bytes behind the store's back (its size record stays)."""
    store.driver.put_content(paths.blob_data(d), data)


def scrub(store: Store, **options: object) -> Report:
    return Scrubber(store.manifests, **options).run()  # type: ignore[arg-type]


def test_a_clean_store_has_nothing_to_report(store: Store) -> None:
    """Every blob re-hashed, every manifest and tag checked, no problem."""
    store.image("r", "1", b"layer")
    report = scrub(store)
    assert report.finished and report.problem_count == 0
    assert (report.blobs_checked, report.manifests_checked) == (3, 1)
    blobs = (Digest.of(b"layer"), Digest.of(b'{"seed": "1"}'), store.manifests.resolve("r", "1"))
    assert report.bytes_read == sum(len(store.blobs.get_small(d)) for d in blobs)


def test_flipped_bytes_are_found_and_quarantined(store: Store) -> None:
    """A layer with one byte flipped is reported corrupt; with quarantine it moves to _quarantine/ with its
    reason, the store no longer has it, and the manifest that needs it is reported in the same pass."""
    m = store.image("r", "1", b"layer bytes")
    layer = Digest.of(b"layer bytes")
    _damage(store, layer, b"layer bytez")
    report = scrub(store, quarantine=True)
    assert [c["digest"] for c in report.corrupt] == [str(layer)] and report.corrupt[0]["quarantined"]
    assert store.driver.get_content(paths.quarantine_dir(layer) + "/data") == b"layer bytez"
    assert str(layer) in store.driver.get_content(paths.quarantine_dir(layer) + "/reason").decode()
    assert not store.has(layer) and store.driver.stat(paths.blob_dir(layer)) is None
    assert report.missing_blobs == [{"repository": "r", "manifest": str(m), "blob": str(layer),
                                     "reason": "is not in the store"}]
    assert f"r@{m}: needs {layer}, which is not in the store" in report.problems()


def test_without_quarantine_corrupt_blobs_stay(store: Store) -> None:
    """Scrub only reports unless asked to quarantine."""
    store.image("r", "1", b"layer")
    _damage(store, Digest.of(b"layer"), b"LAYER")
    report = scrub(store)
    assert len(report.corrupt) == 1 and not report.corrupt[0]["quarantined"]
    assert store.driver.stat(paths.blob_data(Digest.of(b"layer"))) is not None


def test_a_cut_blob_is_corrupt_by_its_size(store: Store) -> None:
    """A blob shorter than its commit recorded is corrupt, named by its size."""
    store.image("r", "1", b"a longer layer")
    _damage(store, Digest.of(b"a longer layer"), b"a longer")
    report = scrub(store, quarantine=True)
    assert "8 bytes, not the 14" in report.corrupt[0]["reason"] and report.corrupt[0]["quarantined"]


def test_a_deleted_blob_and_a_dangling_tag_are_reported(store: Store) -> None:
    """A layer removed from disk shows as missing from its manifest; a tag whose revision is gone names
    nothing; a manifest whose bytes are gone is broken."""
    m = store.image("r", "1", b"layer")
    other = store.image("r", "2", b"other")
    store.driver.delete(paths.blob_dir(Digest.of(b"layer")))
    store.driver.delete(paths.revision_dir("r", other))
    gone = store.image("s", "1", b"s-layer")
    store.driver.delete(paths.blob_dir(gone))
    report = scrub(store)
    assert [(b["manifest"], b["blob"]) for b in report.missing_blobs] == [(str(m), str(Digest.of(b"layer")))]
    assert report.dangling_tags == [{"repository": "r", "tag": "2", "digest": str(other)}]
    assert report.broken_manifests == [{"repository": "s", "manifest": str(gone), "reason": "its bytes are missing"}]
    assert report.problem_count == 3


def test_a_corrupt_manifest_is_quarantined_and_then_missing(store: Store) -> None:
    """A manifest's bytes that no longer match: corrupt, and once quarantined, a broken manifest."""
    m = store.image("r", "1", b"layer")
    data = store.blobs.get_small(m)
    _damage(store, m, data.replace(b"schemaVersion", b"schemaVersioN"))
    report = scrub(store, quarantine=True)
    assert [c["digest"] for c in report.corrupt] == [str(m)]
    assert report.broken_manifests[0]["manifest"] == str(m)


def test_the_caches_repositories_may_lack_blobs(store: Store) -> None:
    """In a pull-through cache's repository a blob not fetched yet is no problem; elsewhere it is."""
    for repo in ("docker.io/library/x", "team/x"):
        store.image(repo, "1", repo.encode())
        store.driver.delete(paths.blob_dir(Digest.of(repo.encode())))
    report = scrub(store, lazy=lambda repo: repo.startswith("docker.io/"))
    assert [b["repository"] for b in report.missing_blobs] == ["team/x"]


def test_a_stopped_pass_goes_on_where_it_was(store: Store) -> None:
    """A pass asked to stop is not finished; a resumed pass skips the blobs the stopped one recorded."""
    for i in range(5):
        store.blob("r", bytes([i]) * 10)
    stop = threading.Event()
    stop.set()
    assert not scrub(store, stop=stop).finished
    digests = sorted(str(Digest.of(bytes([i]) * 10)) for i in range(5))
    store.driver.put_content(paths.SCRUB_RESUME, digests[2].encode())
    report = scrub(store, resume=True)
    assert report.finished and report.blobs_checked == 2
    assert store.driver.stat(paths.SCRUB_RESUME) is None


def test_the_last_report_is_kept(store: Store) -> None:
    """A pass's report is saved as JSON and read back whole."""
    assert last_report(store.driver) is None
    report = scrub(store)
    save_report(store.driver, report)
    assert last_report(store.driver) == report and report.to_json()["kind"] == "scrub"
