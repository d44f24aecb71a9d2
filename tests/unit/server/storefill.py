"""Stores for the web page tests: images pushed through the Store, and 10,000 repositories written fast.

API:
  ``push_image(store_sync, repo, tag, annotations=None, artifact_type=None, subject=None) -> str`` stores a small
  image (config + one layer + manifest) through the ManifestStore/BlobStore and returns the manifest digest.
  ``fill_many(root, store, count) -> list[str]`` writes `count` repositories (`group<NN>/app<NNNNN>`, tag
  `latest`, all the same image) as the manifest and tag link files of a filesystem store under `root`, without
  fsync (and without layer links, which the page does not read): seconds, not minutes.
  ``CountingDriver(driver)``: the driver, counting its calls by method name in ``calls``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from k3sreg.oci.digest import Digest
from k3sreg.storage.store import Store

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _put_blob(store: Store, repo: str, data: bytes) -> dict[str, Any]:
    d = Digest.of(data)
    store.blobs.put_small(d, data)
    store.blobs.link(repo, d)
    return {"digest": str(d), "size": len(data)}


def push_image(store: Store, repo: str, tag: str, annotations: dict[str, str] | None = None,
               artifact_type: str | None = None, subject: str | None = None, arch: str = "amd64") -> str:
    """Store an image (or an artifact, with `artifact_type`) under `repo:tag`; returns its digest."""
    config = json.dumps({"os": "linux", "architecture": arch, "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cfg = _put_blob(store, repo, config) | {"mediaType": "application/vnd.oci.image.config.v1+json"}
    layer = _put_blob(store, repo, f"layer of {repo}:{tag}".encode() * 64) | {
        "mediaType": "application/vnd.oci.image.layer.v1.tar"}
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cfg, "layers": [layer]}
    if annotations:
        doc["annotations"] = annotations
    if artifact_type:
        doc["artifactType"] = artifact_type
    if subject:
        raw = store.manifests.load(Digest.parse(subject)).data
        doc["subject"] = {"mediaType": MT_MANIFEST, "digest": subject, "size": len(raw)}
    data = json.dumps(doc).encode()
    return str(store.manifests.put(repo, tag, data, MT_MANIFEST).digest)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fill_many(root: Path, store: Store, count: int) -> list[str]:
    """`count` repositories holding the same image as tag `latest` (see the module docstring)."""
    first = "group00/app00000"
    digest = push_image(store, first, "latest")
    hexd = digest.split(":", 1)[1]
    repos = root / "docker/registry/v2/repositories"
    names = [first]
    for i in range(1, count):
        name = f"group{i // 1000:02d}/app{i:05d}"
        base = repos / name
        for rel in (f"_manifests/revisions/sha256/{hexd}/link", "_manifests/tags/latest/current/link",
                    f"_manifests/tags/latest/index/sha256/{hexd}/link"):
            _write(base / rel, digest)
        names.append(name)
    return sorted(names)


class CountingDriver:
    """Delegates to `inner`, counting each call of the Driver methods."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if callable(value) and name in {"get_content", "put_content", "stat", "list", "walk", "delete", "move",
                                        "writer", "reader", "touch", "local_path", "try_lock"}:
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return value(*args, **kwargs)
            return counted
        return value


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
