"""Benchmark content: blob files written to disk with their digest, and small OCI manifests that reference them.

Blobs are pseudo-random (seeded, so a run is reproducible) and incompressible; they are written once and streamed
from disk by every push, so no blob is ever held in memory whole.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import MIB

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
# What containerd sends when it resolves a tag: every manifest and index type it understands.
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "*/*",
    ]
)


# A variant of a blob differs from the file in its last TAIL bytes only, so its digest costs one hash of TAIL
# bytes on top of a copy of the prefix's hash state, not a pass over the whole blob.
TAIL = 64


@dataclass(frozen=True)
class BlobFile:
    """A blob: the file's bytes, except the last TAIL bytes when `tail` is set; its size and `sha256:` digest."""

    path: Path
    size: int
    digest: str
    tail: bytes | None = None
    # sha256 of the file's first size - TAIL bytes (a hashlib object, copied for each variant).
    prefix_hash: Any = field(default=None, compare=False, repr=False)

    @property
    def hex(self) -> str:
        """The digest's hex part (the name of the blob's directory in Distribution's layout)."""
        return self.digest.split(":", 1)[1]

    def variant(self, n: int) -> BlobFile:
        """A blob of the same size whose digest is new for each n: every push then stores a new blob, as a
        push of a new layer does (a registry may skip work for a blob it already holds)."""
        if self.prefix_hash is None or self.size < TAIL:
            raise ValueError("this blob has no prefix hash to derive variants from")
        tail = hashlib.sha256(f"k3sreg bench variant {n}".encode()).digest() * (TAIL // 32)
        hasher = self.prefix_hash.copy()
        hasher.update(tail)
        return BlobFile(self.path, self.size, "sha256:" + hasher.hexdigest(), tail, self.prefix_hash)


@dataclass(frozen=True)
class SmallBlob:
    """A blob small enough to send in one request (a config, a tiny layer, a manifest)."""

    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        """The `sha256:` digest of the bytes."""
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, object]:
        """The OCI descriptor that references these bytes."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


def write_blob(path: Path, size_mib: int, seed: int) -> BlobFile:
    """Write size_mib MiB of seeded random bytes to path, hashing as it goes."""
    rng = random.Random(seed)
    hasher = hashlib.sha256()
    prefix = None
    with path.open("wb") as out:
        for i in range(size_mib):
            chunk = rng.randbytes(MIB)
            if i == size_mib - 1:
                hasher.update(chunk[:-TAIL])
                prefix = hasher.copy()
                hasher.update(chunk[-TAIL:])
            else:
                hasher.update(chunk)
            out.write(chunk)
    return BlobFile(path, size_mib * MIB, "sha256:" + hasher.hexdigest(), prefix_hash=prefix)


def config_blob(label: str) -> SmallBlob:
    """A minimal image config; label makes its digest distinct per use."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"k3sreg.bench": label}},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return SmallBlob(json.dumps(config, sort_keys=True).encode(), OCI_CONFIG)


def manifest_for(config: SmallBlob, layers: list[dict[str, object]]) -> SmallBlob:
    """An OCI image manifest referencing config and the given layer descriptors."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers,
    }
    return SmallBlob(json.dumps(manifest, indent=2).encode(), OCI_MANIFEST)


def layer_descriptor(blob: BlobFile | SmallBlob) -> dict[str, object]:
    """The layer descriptor of a blob, on disk or in memory."""
    size = blob.size if isinstance(blob, BlobFile) else len(blob.data)
    return {"mediaType": OCI_LAYER, "digest": blob.digest, "size": size}
