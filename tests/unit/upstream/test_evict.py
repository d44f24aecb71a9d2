"""Eviction by last access and size cap never breaks an image that shares a layer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.inventory import Inventory
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.uploads import UploadSessions
from k3sreg.upstream.evict import Evictor

NOW = 1_000_000.0
HUB = UpstreamSettings(name="docker.io", url="https://registry-1.docker.io", ttl=3600)


def blob(blobs: BlobStore, repo: str, data: bytes) -> Digest:
    uploads = UploadSessions(blobs)
    uuid = uploads.create(repo)
    a = uploads.begin_append(repo, uuid, 0)
    a.write(data)
    a.finish()
    return uploads.commit(repo, uuid, Digest.of(data)).digest


def image(store: ManifestStore, repo: str, tag: str, layers: list[bytes]) -> Digest:
    cfg = blob(store.blobs, repo, json.dumps({"tag": tag}).encode())
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(blob(store.blobs, repo, x)),
              "size": len(x)} for x in layers]
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(cfg), "size": 1},
           "layers": descs}
    return store.put(repo, tag, json.dumps(doc).encode(), None).digest


def age(root: Path, driver_path: str, when: float) -> None:
    os.utime(root / driver_path, (when, when))


def age_repo(root: Path, repo: str, when: float) -> None:
    for p in (root / paths.repo(repo)).rglob("link"):
        os.utime(p, (when, when))


def setup(tmp_path: Path) -> tuple[ManifestStore, FilesystemDriver]:
    driver = FilesystemDriver(tmp_path)
    return ManifestStore(BlobStore(driver)), driver


def test_ttl_evicts_unpulled_image_but_keeps_shared_layer(tmp_path: Path) -> None:
    """An image nobody pulled for ttl goes; the layer it shares with a recently pulled image stays."""
    store, driver = setup(tmp_path)
    old = image(store, "docker.io/library/a", "1", [b"shared", b"only-a"])
    new = image(store, "docker.io/library/b", "1", [b"shared", b"only-b"])
    age_repo(tmp_path, "docker.io/library/a", NOW - 7200)
    age_repo(tmp_path, "docker.io/library/b", NOW - 60)
    report = Evictor(Inventory(store), [HUB], None).run(NOW)
    assert report.manifests == [f"docker.io/library/a@{old}"]
    assert store.tags.list("docker.io/library/a") == []
    assert store.get("docker.io/library/b", "1").digest == new
    assert driver.stat(paths.blob_data(Digest.of(b"shared"))) is not None
    assert driver.stat(paths.blob_data(Digest.of(b"only-a"))) is None
    assert driver.stat(paths.blob_data(old)) is None
    assert driver.stat(paths.blob_data(Digest.of(b"only-b"))) is not None


def test_pushed_images_keep_their_blobs(tmp_path: Path) -> None:
    """A layer a pushed (local) image references is never removed, even when its cached link expires."""
    store, driver = setup(tmp_path)
    image(store, "docker.io/library/a", "1", [b"common"])
    image(store, "team/app", "1", [b"common"])
    age_repo(tmp_path, "docker.io/library/a", NOW - 7200)
    age_repo(tmp_path, "team/app", NOW - 7200)
    Evictor(Inventory(store), [HUB], None).run(NOW)
    assert driver.stat(paths.blob_data(Digest.of(b"common"))) is not None
    assert store.tags.list("team/app") == ["1"]


def test_recent_access_keeps_image(tmp_path: Path) -> None:
    """Last access counts, not fill time: an old image pulled a minute ago stays."""
    store, _ = setup(tmp_path)
    d = image(store, "docker.io/library/a", "1", [b"x"])
    age_repo(tmp_path, "docker.io/library/a", NOW - 7200)
    age(tmp_path, paths.revision_link("docker.io/library/a", d), NOW - 60)
    assert Evictor(Inventory(store), [HUB], None).run(NOW).manifests == []


def test_size_cap_evicts_least_recently_pulled(tmp_path: Path) -> None:
    """Over maxsize, the least recently pulled image goes first until the cache fits."""
    capped = UpstreamSettings(name="docker.io", url="https://x", maxsize=3000)
    store, driver = setup(tmp_path)
    first = image(store, "docker.io/library/a", "1", [b"a" * 1500])
    image(store, "docker.io/library/b", "1", [b"b" * 1500])
    age_repo(tmp_path, "docker.io/library/a", NOW - 100)
    age_repo(tmp_path, "docker.io/library/b", NOW - 10)
    report = Evictor(Inventory(store), [capped], None).run(NOW)
    assert report.manifests == [f"docker.io/library/a@{first}"]
    assert driver.stat(paths.blob_data(Digest.of(b"b" * 1500))) is not None


def test_other_upstreams_and_local_repos_untouched(tmp_path: Path) -> None:
    """Eviction of docker.io never touches quay.io's cache or local repositories."""
    store, _ = setup(tmp_path)
    image(store, "quay.io/org/app", "1", [b"q"])
    image(store, "team/app", "1", [b"t"])
    age_repo(tmp_path, "quay.io/org/app", NOW - 99999)
    age_repo(tmp_path, "team/app", NOW - 99999)
    assert Evictor(Inventory(store), [HUB], None).run(NOW).manifests == []


class CountingDriver(FilesystemDriver):
    """A filesystem driver that counts the calls that read the store."""

    calls = 0

    def stat(self, path: str) -> Any:
        self.calls += 1
        return super().stat(path)

    def list(self, path: str) -> list[str]:
        self.calls += 1
        return super().list(path)

    def get_content(self, path: str) -> bytes:
        self.calls += 1
        return super().get_content(path)


def test_size_cap_costs_the_store_once_not_once_per_eviction(tmp_path: Path) -> None:
    """Evicting half of a capped cache reads the store a bounded number of times per object, however many
    manifests go (marking once, then sweeping), and keeps exactly the newest half."""
    driver = CountingDriver(tmp_path)
    store = ManifestStore(BlobStore(driver))
    n = 40
    digests = []
    for i in range(n):
        digests.append(image(store, f"docker.io/library/app{i % 4}", f"v{i}", [b"%d-a" % i * 50, b"%d-b" % i * 50]))
        age_repo_manifest(tmp_path, f"docker.io/library/app{i % 4}", digests[-1], NOW - 10_000 + i)
    total = sum(len(store.load(d).data) for d in digests) + sum(len(b"%d-a" % i * 50) * 2 for i in range(n))
    capped = UpstreamSettings(name="docker.io", url="https://x", maxsize=total // 2 + 2000)
    driver.calls = 0
    report = Evictor(Inventory(store), [capped], None).run(NOW)
    objects = n * 4  # a manifest, its config and two layers
    assert driver.calls < 12 * objects, driver.calls
    evicted = {entry.split("@")[1] for entry in report.manifests}
    assert evicted == {str(d) for d in digests[:len(evicted)]} and 0 < len(evicted) < n


def age_repo_manifest(root: Path, repo: str, d: Digest, when: float) -> None:
    """Set the last access of manifest `d` of `repo` (its revision link)."""
    os.utime(root / paths.revision_link(repo, d), (when, when))
