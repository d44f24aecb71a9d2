"""The content store on both drivers: uploads, manifests, tags, referrers, catalog, purging."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from k3sreg import errors
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.storage import catalog, paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.driver import Driver
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.purge import purge_uploads
from k3sreg.storage.uploads import UploadSessions


def push_blob(uploads: UploadSessions, repo: str, data: bytes) -> Digest:
    uuid = uploads.create(repo)
    a = uploads.begin_append(repo, uuid, 0)
    a.write(data)
    a.finish()
    return uploads.commit(repo, uuid, Digest.of(data)).digest


def stores(driver: Driver) -> tuple[UploadSessions, ManifestStore]:
    """Upload sessions and manifests over one BlobStore on `driver`."""
    blobs = BlobStore(driver)
    return UploadSessions(blobs), ManifestStore(blobs)


def image(config: Digest, layers: list[Digest], **extra: Any) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(config),
                                      "size": 2},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(d),
                                       "size": 1} for d in layers]}
    doc.update(extra)
    return json.dumps(doc).encode()


def test_chunked_upload_commits_and_links(driver: Driver) -> None:
    """Chunks appended in order commit to the global store and are linked into the repository."""
    uploads = UploadSessions(BlobStore(driver))
    uuid = uploads.create("a/b")
    for i, part in enumerate([b"hello ", b"world"]):
        a = uploads.begin_append("a/b", uuid, 6 * i)
        a.write(part)
        a.finish()
    info = uploads.commit("a/b", uuid, Digest.of(b"hello world"))
    assert uploads.blobs.stat("a/b", info.digest).size == 11
    assert driver.get_content(paths.blob_data(info.digest)) == b"hello world"
    assert driver.list(paths.uploads("a/b")) == []


def test_wrong_offset_is_range_invalid(driver: Driver) -> None:
    """A chunk that does not start at the current size is refused and says where the upload is."""
    uploads = UploadSessions(BlobStore(driver))
    uuid = uploads.create("r")
    with pytest.raises(errors.RangeInvalid) as e:
        uploads.begin_append("r", uuid, 5)
    assert e.value.headers["Range"] == "0-0"


def test_digest_mismatch_leaves_nothing(driver: Driver) -> None:
    """A commit with the wrong digest stores no blob, no link, and ends the session."""
    uploads = UploadSessions(BlobStore(driver))
    uuid = uploads.create("r")
    a = uploads.begin_append("r", uuid, None)
    a.write(b"data")
    a.finish()
    wrong = Digest.of(b"other")
    with pytest.raises(errors.DigestInvalid):
        uploads.commit("r", uuid, wrong)
    assert uploads.blobs.stat_global(wrong) is None and uploads.blobs.stat_global(Digest.of(b"data")) is None
    with pytest.raises(errors.BlobUploadUnknown):
        uploads.size("r", uuid)


def test_hash_recovered_when_another_process_appended(driver: Driver) -> None:
    """A session whose in-memory hash is stale (another worker appended) is rehashed from the file."""
    one, two = UploadSessions(BlobStore(driver)), UploadSessions(BlobStore(driver))
    uuid = one.create("r")
    a = one.begin_append("r", uuid, 0)
    a.write(b"abc")
    a.finish()
    b = two.begin_append("r", uuid, 3)
    b.write(b"def")
    b.finish()
    assert one.commit("r", uuid, Digest.of(b"abcdef")).size == 6


def test_mount_needs_link_in_source(driver: Driver) -> None:
    """Mounting from a repository that does not hold the blob fails; from one that does, it links."""
    uploads = UploadSessions(BlobStore(driver))
    d = push_blob(uploads, "src", b"x")
    assert uploads.blobs.mount("dst", d, "elsewhere") is None
    assert uploads.blobs.mount("dst", d, "src") is not None and uploads.blobs.stat("dst", d).size == 1
    assert uploads.blobs.mount("auto", d, None) is not None


def test_manifest_with_missing_blob_writes_nothing(driver: Driver) -> None:
    """MANIFEST_BLOB_UNKNOWN lists the missing digests and leaves no revision or tag."""
    uploads, store = stores(driver)
    cfg = push_blob(uploads, "r", b"{}")
    missing = Digest.of(b"layer")
    with pytest.raises(errors.ManifestBlobUnknown) as e:
        store.put("r", "v1", image(cfg, [missing]), mt.OCI_MANIFEST)
    assert str(missing) in e.value.detail["digests"]
    assert driver.list(paths.tags("r")) == [] and driver.list(paths.revisions("r")) == []


def test_tag_moves_and_keeps_history(driver: Driver) -> None:
    """Re-tagging updates `current` and keeps every digest in the tag's index, as Distribution does."""
    uploads, store = stores(driver)
    cfg, l1, l2 = (push_blob(uploads, "r", x) for x in (b"{}", b"1", b"2"))
    first = store.put("r", "v1", image(cfg, [l1]), None)
    second = store.put("r", "v1", image(cfg, [l2]), None)
    assert store.get("r", "v1").digest == second.digest
    assert sorted(driver.list(f"{paths.tag_dir('r', 'v1')}/index/sha256")) == sorted(
        [first.digest.hex, second.digest.hex])
    assert store.get("r", str(first.digest)).data == image(cfg, [l1])


def test_delete_by_digest_removes_its_tags(driver: Driver) -> None:
    """Deleting a manifest deletes the tags pointing at it; other tags stay."""
    uploads, store = stores(driver)
    cfg, l1, l2 = (push_blob(uploads, "r", x) for x in (b"{}", b"1", b"2"))
    a = store.put("r", "a", image(cfg, [l1]), None)
    store.put("r", "b", image(cfg, [l2]), None)
    store.put("r", "a2", image(cfg, [l1]), None)
    store.delete("r", str(a.digest))
    assert store.tags.list("r") == ["b"]
    with pytest.raises(errors.ManifestUnknown):
        store.get("r", str(a.digest))


def test_referrers_filtered_by_artifact_type(driver: Driver) -> None:
    """Manifests with a subject are listed as its referrers, filterable by artifactType."""
    uploads, store = stores(driver)
    cfg, l1 = push_blob(uploads, "r", b"{}"), push_blob(uploads, "r", b"1")
    subject = store.put("r", "v1", image(cfg, [l1]), None)
    subj = {"mediaType": mt.OCI_MANIFEST, "digest": str(subject.digest), "size": subject.size}
    sig = store.put("r", "sig", image(cfg, [l1], subject=subj, artifactType="application/x.sig"), None)
    store.put("r", "sbom", image(cfg, [l1], subject=subj, artifactType="application/x.sbom"), None)
    assert len(store.referrers("r", subject.digest, None)) == 2
    only = store.referrers("r", subject.digest, "application/x.sig")
    assert [d.digest for d in only] == [sig.digest] and only[0].artifact_type == "application/x.sig"
    store.delete("r", str(sig.digest))
    assert len(store.referrers("r", subject.digest, None)) == 1


def test_catalog_finds_nested_repositories_sorted(driver: Driver) -> None:
    """The catalog lists every repository with manifests, nested ones too, in lexical order, with pagination."""
    uploads, store = stores(driver)
    for name in ["b", "a/c", "a", "a/c/d"]:
        store.put(name, "1", image(push_blob(uploads, name, b"{}"), []), None)
    push_blob(uploads, "only/uploads", b"x")  # an interrupted first push is not a repository yet
    names = catalog.repositories(driver)
    assert names == ["a", "a/c", "a/c/d", "b"]
    assert "only/uploads" in catalog.repositories(driver, catalog.ALL_MARKERS)
    assert catalog.page(names, 2, None) == (["a", "a/c"], True)
    assert catalog.page(names, 2, "a/c") == (["a/c/d", "b"], False)


def test_half_written_tag_is_not_listed(driver: Driver) -> None:
    """A tag directory without its current link (a crash mid-put) is not listed; a repo without tags is unknown."""
    uploads, store = stores(driver)
    d = store.put("r", "good", image(push_blob(uploads, "r", b"{}"), []), None).digest
    driver.put_content(paths.tag_index_link("r", "half", d), str(d).encode())
    assert store.tags.list("r") == ["good"]
    push_blob(uploads, "uploads/only", b"y")
    with pytest.raises(errors.NameUnknown):
        store.tags.list("uploads/only")


def test_purge_removes_only_old_uploads(driver: Driver) -> None:
    """Upload purging removes sessions older than the age and keeps recent ones."""
    uploads = UploadSessions(BlobStore(driver))
    old, new = uploads.create("r"), uploads.create("r")
    driver.put_content(paths.upload_startedat("r", old), b"2020-01-01T00:00:00Z")
    assert purge_uploads(driver, age=3600, dry_run=True) == [f"r/{old}"]
    assert driver.list(paths.uploads("r")) != []
    purge_uploads(driver, age=3600)
    assert driver.list(paths.uploads("r")) == [new]


def test_tag_list_cache_follows_changes(driver: Driver) -> None:
    """The remembered tag list sees new, deleted and finished tags even when the directory looks unchanged."""
    uploads, store = stores(driver)
    d = store.put("r", "a", image(push_blob(uploads, "r", b"{}"), []), None).digest
    driver.put_content(paths.tag_index_link("r", "half", d), str(d).encode())
    if isinstance(driver, FilesystemDriver):  # age the directory so the list is remembered
        old = driver.root / paths.tags("r")
        os.utime(old, (1, 1))
    assert store.tags.list("r") == ["a"]
    assert store.tags.list("r") == ["a"]  # from memory
    driver.put_content(paths.tag_current_link("r", "half"), str(d).encode())
    assert store.tags.list("r") == ["a", "half"]
    store.put("r", "b", image(push_blob(uploads, "r", b"{}"), []), None)
    store.delete("r", "a")
    assert store.tags.list("r") == ["b", "half"]
