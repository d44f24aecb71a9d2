"""Benchmark content: blob files written to disk with their digest, and small OCI manifests that reference them.

Blobs are pseudo-random (seeded, so a run is reproducible) and incompressible; they are written once and streamed
from disk by every push, so no blob is ever held in memory whole.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class BlobFile:
    """A blob on disk: its path, size in bytes and `sha256:` digest."""

    path: Path
    size: int
    digest: str

    @property
    def hex(self) -> str:
        """The digest's hex part (the name of the blob's directory in Distribution's layout)."""
        return self.digest.split(":", 1)[1]


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
    with path.open("wb") as out:
        for _ in range(size_mib):
            chunk = rng.randbytes(MIB)
            hasher.update(chunk)
            out.write(chunk)
    return BlobFile(path, size_mib * MIB, "sha256:" + hasher.hexdigest())


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
