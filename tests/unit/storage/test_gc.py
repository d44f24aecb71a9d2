"""Garbage collection on both drivers: what a run keeps and removes, with and without delete_untagged, the delay,
dry runs, what it prints, and stores it cannot fully read."""

from __future__ import annotations

import json
import time

from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.gc import last_report, save_report
from tests.unit.storage.pushes import Store


def test_blobs_no_manifest_needs_go_and_shared_ones_stay(store: Store) -> None:
    """A run removes an uploaded blob nothing references and the layers only a deleted manifest needed; a
    layer another image shares stays, and so does every blob of the images that remain."""
    keep = store.image("app", "1", b"shared", b"only-1")
    gone = store.image("app", "2", b"shared", b"only-2")
    stray = store.blob("app", b"never referenced")
    store.manifests.delete("app", str(gone))
    doomed = [gone, Digest.of(b'{"seed": "2"}'), Digest.of(b"only-2"), stray]
    sizes = sum(info.size for d in doomed if (info := store.blobs.stat_global(d)) is not None)
    report, _ = store.collect()
    assert not any(store.has(d) for d in doomed)
    assert all(store.has(d) for d in (keep, Digest.of(b"shared"), Digest.of(b"only-1")))
    assert store.manifests.get("app", "1").digest == keep
    assert (report.blobs_removed, report.manifests_removed, report.bytes_freed) == (4, 0, sizes)


def test_the_output_is_distributions(store: Store) -> None:
    """What a run prints has `registry garbage-collect`'s lines: each repository, each manifest and the blobs it
    marks, the count line after an empty line, then each blob eligible for deletion."""
    m = store.image("lib/a", "1", b"layer")
    stray = store.blob("lib/a", b"stray")
    cfg = Digest.of(b'{"seed": "1"}')
    _, lines = store.collect(dry_run=True)
    assert lines == ["lib/a", f"lib/a: marking manifest {m} ", f"lib/a: marking blob {cfg}",
                     f"lib/a: marking blob {Digest.of(b'layer')}", "",
                     "3 blobs marked, 1 blobs and 0 manifests eligible for deletion",
                     f"blob eligible for deletion: {stray}"]
    assert store.has(stray)


def test_delete_untagged_keeps_what_tags_reach(store: Store) -> None:
    """With delete_untagged, an untagged manifest goes with its referrers and the blobs only they needed; the
    children of a tagged index, the referrers of a tagged image and a manifest whose tag moved away go or stay
    by what the tags reach."""
    child_a, child_b = store.image("m", "@", b"a1", b"shared"), store.image("m", "@", b"b1")
    index = store.index("m", "latest", child_a, child_b)
    tagged = store.image("m", "1", b"shared")
    sig = store.image("m", "@", b"sig", subject={"mediaType": mt.OCI_MANIFEST, "digest": str(tagged), "size": 1})
    untagged = store.image("m", "@", b"u1")
    sig_of_untagged = store.image("m", "@", b"sig-u",
                                  subject={"mediaType": mt.OCI_MANIFEST, "digest": str(untagged), "size": 1})
    moved = store.image("m", "2", b"old")
    store.image("m", "2", b"new")
    report, lines = store.collect(delete_untagged=True)
    for d in (index, child_a, child_b, tagged, sig, Digest.of(b"a1"), Digest.of(b"b1"), Digest.of(b"sig")):
        assert store.has(d), d
    for d in (untagged, sig_of_untagged, moved, Digest.of(b"u1"), Digest.of(b"sig-u"), Digest.of(b"old")):
        assert not store.has(d), d
    assert report.manifests_removed == 3
    assert store.manifests.revisions("m") and set(store.manifests.revisions("m")) == {
        index, child_a, child_b, tagged, sig, store.manifests.resolve("m", "2")}
    assert store.manifests.referrers("m", tagged, None)[0].digest == sig
    assert f"manifest eligible for deletion: {untagged}" in lines
    assert not store.driver.list(paths.tag_index_dir("m", "2", moved).rsplit("/", 1)[0]) or \
        moved.hex not in store.driver.list(paths.tag_index_dir("m", "2", moved).rsplit("/", 1)[0])


def test_delete_untagged_drops_a_whole_untagged_tree(store: Store) -> None:
    """An untagged index, the index inside it and its images all go in one run."""
    leaf = store.image("n", "@", b"leaf")
    inner = store.index("n", "@", leaf)
    outer = store.index("n", "@", inner)
    report, _ = store.collect(delete_untagged=True)
    assert not any(store.has(d) for d in (leaf, inner, outer, Digest.of(b"leaf")))
    assert report.manifests_removed == 3 and store.manifests.revisions("n") == []


def test_delete_untagged_applies_only_where_asked(store: Store) -> None:
    """Repositories `untagged_in` leaves out keep their untagged manifests (the server leaves the cache's to
    eviction)."""
    cached = store.image("docker.io/lib/x", "@", b"cached")
    local = store.image("team/app", "@", b"local")
    store.collect(delete_untagged=True, untagged_in=lambda repo: not repo.startswith("docker.io/"))
    assert store.has(cached) and store.has(Digest.of(b"cached")) and not store.has(local)


def test_the_delay_keeps_what_was_used_lately(store: Store) -> None:
    """Within `delay`, an uploaded blob nothing references yet, and an untagged manifest, stay; the count says
    so. Later runs without the delay take them."""
    stray = store.blob("r", b"uploaded, manifest not pushed yet")
    untagged = store.image("r", "@", b"u")
    report, _ = store.collect(delay=3600, delete_untagged=True)
    assert store.has(stray) and store.has(untagged) and report.blobs_removed == 0
    assert (report.blobs_kept_recent, report.manifests_removed) == (1, 0)  # the manifest keeps its blobs marked
    store.collect(delete_untagged=True)
    assert not store.has(stray) and not store.has(untagged)


def test_a_dry_run_removes_nothing(store: Store) -> None:
    """A dry run counts what it would remove, and removes nothing."""
    untagged = store.image("r", "@", b"u")
    report, lines = store.collect(dry_run=True, delete_untagged=True)
    assert store.has(untagged) and store.manifests.revisions("r") == [untagged]
    assert (report.manifests_removed, report.blobs_removed) == (1, 3)
    assert "0 blobs marked, 3 blobs and 1 manifests eligible for deletion" in lines


def test_a_manifest_without_bytes_keeps_its_repository(store: Store) -> None:
    """A revision whose bytes are gone is reported and never dropped, and every blob its repository links
    stays: what it needed cannot be known."""
    m = store.image("r", "1", b"layer")
    store.driver.delete(paths.blob_dir(m))
    stray = store.blob("r", b"linked here")
    report, _ = store.collect(delete_untagged=True)
    assert store.has(Digest.of(b"layer")) and store.has(stray)
    assert store.manifests.revisions("r") == [m]
    assert report.problems and m.hex in report.problems[0]


def test_schema1_manifests_keep_their_layers(store: Store) -> None:
    """A Docker schema 1 manifest from an old registry:2 volume needs its fsLayers."""
    layer = store.blob("old", b"schema1 layer")
    doc = json.dumps({"schemaVersion": 1, "name": "old", "tag": "1", "fsLayers": [{"blobSum": str(layer)}]})
    d = Digest.of(doc.encode())
    store.blobs.put_small(d, doc.encode())
    store.driver.put_content(paths.revision_link("old", d), str(d).encode())
    report, _ = store.collect()
    assert store.has(layer) and report.problems == []


def test_the_last_report_is_kept_for_every_worker(store: Store) -> None:
    """A run's report is saved as JSON and read back whole."""
    assert last_report(store.driver) is None
    report, _ = store.collect()
    save_report(store.driver, report)
    assert last_report(store.driver) == report
    assert report.to_json()["kind"] == "gc" and "removed 0 manifests" in report.line()


def test_a_run_takes_the_storage_clock(store: Store) -> None:
    """Whatever is written after a run's clock reading is strictly newer than it."""
    t0 = store.blobs.guard.clock()
    store.driver.put_content("after", b"")
    info = store.driver.stat("after")
    assert info is not None and info.mtime > t0 and abs(t0 - time.time()) < 60


def test_a_revision_left_without_its_link_is_no_manifest(store: Store) -> None:
    """Distribution deletes a manifest by removing its link alone: the directory left behind keeps nothing."""
    m = store.image("r", "1", b"layer")
    store.driver.delete(paths.revision_link("r", m))
    report, _ = store.collect()
    assert not store.has(m) and not store.has(Digest.of(b"layer")) and report.blobs_removed == 3
