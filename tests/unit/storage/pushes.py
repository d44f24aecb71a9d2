"""A store with helpers that push whole images, for the garbage collection and scrub tests."""

from __future__ import annotations

import json
from typing import Any

from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.driver import Driver
from k3sreg.storage.gc import Collector, Report
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.uploads import UploadSessions
from tests.unit.storage.test_store import image, push_blob


class Store:
    """Uploads and manifests over one blob store, with helpers that push whole images."""

    def __init__(self, driver: Driver):
        self.driver = driver
        self.blobs = BlobStore(driver)
        self.uploads, self.manifests = UploadSessions(self.blobs), ManifestStore(self.blobs)

    def blob(self, repo: str, data: bytes) -> Digest:
        return push_blob(self.uploads, repo, data)

    def image(self, repo: str, ref: str, *layers: bytes, **extra: Any) -> Digest:
        """Push a config and `layers` to `repo`, then a manifest under `ref` (a tag, or "@" for its digest), with
        the sizes a client would give."""
        config = b'{"seed": "%s"}' % ref.encode()
        doc = json.loads(image(self.blob(repo, config), [self.blob(repo, layer) for layer in layers], **extra))
        doc["config"]["size"] = len(config)
        for desc, layer in zip(doc["layers"], layers, strict=True):
            desc["size"] = len(layer)
        return self.put(repo, ref, json.dumps(doc).encode())

    def put(self, repo: str, ref: str, doc: bytes) -> Digest:
        return self.manifests.put(repo, str(Digest.of(doc)) if ref == "@" else ref, doc, None).digest

    def index(self, repo: str, ref: str, *children: Digest) -> Digest:
        doc = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": str(c), "size": len(self.blobs.get_small(c)),
             "platform": {"architecture": f"arch{i}", "os": "linux"}} for i, c in enumerate(children)]}).encode()
        return self.put(repo, ref, doc)

    def has(self, d: Digest) -> bool:
        return self.blobs.stat_global(d) is not None

    def collect(self, **options: Any) -> tuple[Report, list[str]]:
        lines: list[str] = []
        report = Collector(self.manifests, emit=lines.append, **options).run()
        return report, lines
