"""The mark of a sweep: what kept manifests need, counted once and kept up to date as manifests go."""

from __future__ import annotations

import json

from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.driver import Driver
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.mark import Mark
from k3sreg.storage.uploads import UploadSessions
from tests.unit.storage.test_store import image, push_blob


def test_a_shared_layer_is_freed_with_the_last_manifest_that_needs_it(driver: Driver) -> None:
    """Dropping manifests frees what only they needed: a layer two images share goes with the second one, an
    index keeps its child manifest (not the child's layers, which go with the child's revision), and each
    manifest frees itself."""
    blobs = BlobStore(driver)
    uploads, store = UploadSessions(blobs), ManifestStore(blobs)
    cfg, shared, only_a = (push_blob(uploads, "r", x) for x in (b"{}", b"shared", b"only-a"))
    a = store.put("r", "a", image(cfg, [shared, only_a]), None).digest
    b = store.put("other", "b", image(cfg, [shared]), None, check_references=False).digest
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": str(a), "size": 1}]}).encode()
    i = store.put("r", "list", index, None).digest
    mark = Mark.of(store, ["r", "other"])
    assert all(mark.kept(d) for d in (cfg, shared, only_a, a, b, i))
    assert mark.drop("r", a) == [only_a]  # the index still needs `a` itself
    assert set(mark.drop("r", i)) == {i, a}
    assert set(mark.drop("other", b)) == {b, cfg, shared}
    assert not any(mark.kept(d) for d in (cfg, shared, only_a, a, b, i))
    assert mark.drop("other", b) == []


def test_an_unreadable_manifest_keeps_only_itself(driver: Driver) -> None:
    """A revision whose bytes are gone is kept by its own digest and needs nothing else."""
    store = ManifestStore(BlobStore(driver))
    missing = Digest.of(b"gone")
    store.blobs.driver.put_content(f"docker/registry/v2/repositories/r/_manifests/revisions/sha256/{missing.hex}/link",
                                   str(missing).encode())
    mark = Mark.of(store, ["r"])
    assert mark.kept(missing) and mark.drop("r", missing) == [missing]
