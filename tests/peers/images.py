"""Deterministic OCI test images, written as an OCI image layout without a daemon or a network.

API:
  ``build_layout(root, layers=2, layer_size=2048, seed=42, tag="1") -> TestLayout`` writes, in ``root``:
    * tag ``1``          single-platform image (linux/amd64, ``layers`` gzip layers of ``layer_size``
                         random bytes)
    * tag ``1-multi``    two-platform image index (linux/amd64 + linux/arm64)
    * tag ``1-sig``      an artifact manifest whose ``subject`` is the tag ``1`` image (a referrer)
  and returns a ``TestLayout`` with every digest (``single``, ``index``, ``platforms``, ``referrer``).
  ``LayoutWriter(root)``: the lower-level builder (``put_blob``, ``add_image``, ``add_index``,
  ``add_referrer``, ``tag``, ``save``) for custom layouts (more layers, bigger blobs, other seeds).
  ``Image`` / ``Descriptor``: what the builder returns; ``Image.blobs`` lists every blob digest the
  registry must hold for it (config + layers), ``Descriptor.as_json()`` is the OCI descriptor dict.
  ``read_blob(root, digest) -> bytes`` reads any blob of a layout (manifests included).

Blobs depend only on the seed and sizes (tar mtime fixed, gzip mtime 0), so digests are stable across runs.
Push with ``skopeo copy oci:ROOT:1 docker://HOST/REPO:1`` (``--all`` for ``1-multi``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
ARTIFACT_TYPE_SIG = "application/vnd.k3sreg.test.signature.v1"
REF_NAME = "org.opencontainers.image.ref.name"
FIXED_MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: media type, digest, size, and optional extra fields (platform...)."""

    media_type: str
    digest: str
    size: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The descriptor as it appears in a manifest or index."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **self.extra}


@dataclass(frozen=True)
class Image:
    """A single-platform image manifest with its config and layers."""

    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def digest(self) -> str:
        """The manifest digest."""
        return self.manifest.digest

    @property
    def blobs(self) -> list[str]:
        """Digests of every blob (config first, then layers) a registry must hold for this image."""
        return [self.config.digest, *(layer.digest for layer in self.layers)]


@dataclass(frozen=True)
class TestLayout:
    """The standard test layout: where it is and every digest in it."""

    __test__ = False  # not a pytest test class despite its name

    root: Path
    tag: str
    single: Image
    index: Descriptor
    platforms: dict[str, Image]
    referrer: Descriptor

    @property
    def multi_tag(self) -> str:
        """Tag of the two-platform index in the layout."""
        return f"{self.tag}-multi"

    @property
    def referrer_tag(self) -> str:
        """Tag of the referrer artifact in the layout."""
        return f"{self.tag}-sig"

    def oci_ref(self, tag: str | None = None) -> str:
        """The ``oci:DIR:TAG`` transport reference that skopeo understands."""
        return f"oci:{self.root}:{tag or self.tag}"


def digest_of(data: bytes) -> str:
    """The sha256 digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes (sorted keys, no spaces) so manifests hash the same every run."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def read_blob(root: Path, digest: str) -> bytes:
    """Bytes of the blob ``digest`` in the layout at ``root``."""
    alg, hexpart = digest.split(":", 1)
    return (root / "blobs" / alg / hexpart).read_bytes()


class LayoutWriter:
    """Adds blobs, images, indexes and tags to an OCI image layout directory; ``save()`` writes index.json."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        index_path = root / "index.json"
        self.index: dict[str, Any] = (
            json.loads(index_path.read_text())
            if index_path.exists()
            else {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
        )

    def put_blob(self, data: bytes, media_type: str, **extra: Any) -> Descriptor:
        """Store ``data`` as a blob (idempotent) and return its descriptor."""
        dgst = digest_of(data)
        path = self.root / "blobs" / "sha256" / dgst.split(":", 1)[1]
        if not path.exists():
            path.write_bytes(data)
        return Descriptor(media_type, dgst, len(data), dict(extra))

    def add_image(self, rng: random.Random, arch: str = "amd64", layers: int = 2, layer_size: int = 2048) -> Image:
        """Add a linux/``arch`` image whose layers hold ``layer_size`` bytes from ``rng`` each."""
        layer_descs: list[Descriptor] = []
        diff_ids: list[str] = []
        for i in range(layers):
            gz, diff_id = _make_layer(rng, i, layer_size)
            layer_descs.append(self.put_blob(gz, MT_LAYER_GZ))
            diff_ids.append(diff_id)
        config = {
            "created": CREATED,
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/hello"], "Env": ["PATH=/"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": CREATED, "created_by": "tests.peers.images"} for _ in diff_ids],
        }
        config_desc = self.put_blob(canonical_json(config), MT_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": config_desc.as_json(),
            "layers": [d.as_json() for d in layer_descs],
        }
        manifest_desc = self.put_blob(canonical_json(manifest), MT_MANIFEST)
        return Image(manifest_desc, config_desc, tuple(layer_descs))

    def add_index(self, images: dict[str, Image]) -> Descriptor:
        """Add an image index over ``{arch: image}`` (all linux)."""
        manifests = [
            {**img.manifest.as_json(), "platform": {"architecture": arch, "os": "linux"}}
            for arch, img in images.items()
        ]
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        return self.put_blob(canonical_json(index), MT_INDEX)

    def add_referrer(self, subject: Descriptor, artifact_type: str = ARTIFACT_TYPE_SIG) -> Descriptor:
        """Add an artifact manifest (empty config, one small layer) whose ``subject`` is ``subject``."""
        empty = self.put_blob(b"{}", MT_EMPTY)
        payload = self.put_blob(
            canonical_json({"signed": subject.digest}), "application/vnd.k3sreg.test.payload.v1+json"
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "artifactType": artifact_type,
            "config": empty.as_json(),
            "layers": [payload.as_json()],
            "subject": subject.as_json(),
            "annotations": {"org.opencontainers.image.created": CREATED},
        }
        return self.put_blob(canonical_json(manifest), MT_MANIFEST, artifactType=artifact_type)

    def tag(self, desc: Descriptor, name: str) -> None:
        """Point tag ``name`` of the layout at ``desc`` (replacing an older entry of that name)."""
        entry = desc.as_json()
        entry["annotations"] = {**entry.get("annotations", {}), REF_NAME: name}
        kept = [m for m in self.index["manifests"] if m.get("annotations", {}).get(REF_NAME) != name]
        self.index["manifests"] = [*kept, entry]

    def save(self) -> None:
        """Write index.json."""
        (self.root / "index.json").write_text(json.dumps(self.index, indent=2))


def _make_layer(rng: random.Random, idx: int, size: int) -> tuple[bytes, str]:
    """A gzip tar layer with one random file (plus ``/hello`` in layer 0); returns (gzip bytes, diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        files = [(f"layer{idx}/random.bin", rng.randbytes(size))]
        if idx == 0:
            files.append(("hello", b"hello from tests.peers.images\n"))
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = FIXED_MTIME
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(content))
    raw = buf.getvalue()
    out = io.BytesIO()
    # mtime=0 keeps the gzip header, hence the layer digest, identical from run to run.
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return out.getvalue(), digest_of(raw)


def build_layout(root: Path, layers: int = 2, layer_size: int = 2048, seed: int = 42, tag: str = "1") -> TestLayout:
    """Write the standard test layout (single image, two-platform index, referrer) into ``root``."""
    rng = random.Random(seed)
    writer = LayoutWriter(root)
    single = writer.add_image(rng, "amd64", layers, layer_size)
    writer.tag(single.manifest, tag)
    platforms = {arch: writer.add_image(rng, arch, layers, layer_size) for arch in ("amd64", "arm64")}
    index = writer.add_index(platforms)
    writer.tag(index, f"{tag}-multi")
    referrer = writer.add_referrer(single.manifest)
    writer.tag(referrer, f"{tag}-sig")
    writer.save()
    return TestLayout(root, tag, single, index, platforms, referrer)
