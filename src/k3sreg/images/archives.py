"""What `images push` reads, without a daemon: an OCI layout directory, an oci-archive (that layout as a tar:
`buildah push oci-archive:`, `podman save --format oci-archive`, `skopeo copy ... oci-archive:`), or a
docker-archive (`docker save`, `podman save`: manifest.json, a config and layer tars).

An archive is read in place (tar members are read at their offsets, nothing is unpacked). A docker-archive
has no manifest: one is written here (Docker schema 2, config and layers as the archive holds them; a layer is
`tar+gzip` when its bytes are gzip, else a plain `tar`), so its digest is this tool's, and the config's digest
is the archive's.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

from k3sreg.errors import UsageError
from k3sreg.images.layout import LayoutSource
from k3sreg.images.model import CHUNK, CONTAINERD_NAME, REF_NAME, Blob, Image, Node, stream_file
from k3sreg.images.trees import images_of
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest, InvalidDigest

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"


class TarSource:
    """Blobs read from members of an uncompressed tar, in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with tarfile.open(path, mode="r:") as tar:
                self.members = {m.name.lstrip("./"): (m.offset_data, m.size) for m in tar if m.isfile()}
        except (OSError, tarfile.TarError) as exc:
            raise UsageError(f"{path}: not a readable tar archive ({exc})") from None
        self.by_digest: dict[Digest, str] = {}

    def read(self, name: str) -> bytes | None:
        found = self.members.get(name)
        if found is None:
            return None
        with self.path.open("rb") as f:
            f.seek(found[0])
            return f.read(found[1])

    def open_member(self, name: str) -> BinaryIO:
        offset, size = self.members[name]
        f = self.path.open("rb")
        f.seek(offset)
        return _Bounded(f, size)  # type: ignore[return-value]

    def open_file(self, blob: Blob) -> BinaryIO:
        name = self.by_digest.get(blob.digest, f"blobs/{blob.digest.algorithm}/{blob.digest.hex}")
        if name not in self.members:
            raise UsageError(f"{self.path}: blob {blob.digest} is not in the archive")
        return self.open_member(name)

    async def stream(self, repo: str, blob: Blob, offset: int = 0) -> AsyncIterator[bytes]:
        del repo
        async for chunk in stream_file(lambda: self.open_file(blob), offset):
            yield chunk


class _Bounded:
    """`size` bytes of an open file from where it stands; closes the file."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> _Bounded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_archive(path: Path, select: str | None = None) -> Image:
    """The one image of the archive at `path` (or the one whose name or tag is `select`); UsageError when the
    archive holds none, several (without `select`) or is of an unknown kind."""
    if path.is_dir():
        if not (path / "oci-layout").exists():
            raise UsageError(f"{path}: a directory without oci-layout is not an OCI image layout")
        return _pick(LayoutSource(path).images("archive"), select, path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file or directory")
    source = TarSource(path)
    if "index.json" in source.members:
        index = source.read("index.json") or b""

        def read(digest: Digest) -> bytes | None:
            data = source.read(f"blobs/{digest.algorithm}/{digest.hex}")
            if data is not None and Digest.of(data, digest.algorithm) != digest:
                raise UsageError(f"{path}: manifest {digest} does not match its digest; the archive is damaged")
            return data

        return _pick(images_of(_named(index), read, source, str(path), "archive"), select, path)
    if "manifest.json" in source.members:
        return _docker(source, select)
    raise UsageError(f"{path}: neither an OCI archive (index.json) nor a docker-archive (manifest.json)")


def _named(index: bytes) -> bytes:
    """index.json with every entry given a name, so `images_of` accepts tags such as `latest` alone."""
    try:
        doc = json.loads(index)
    except ValueError:
        return index
    for entry in doc.get("manifests", []) if isinstance(doc, dict) else []:
        annotations = entry.setdefault("annotations", {})
        if not (annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME)):
            annotations[REF_NAME] = entry.get("digest", "")
    return json.dumps(doc).encode()


def _pick(images: list[Image], select: str | None, path: Path) -> Image:
    if select:
        images = [i for i in images if select in (i.reference, i.tag, i.name, str(i.root.digest))]
    if len(images) != 1:
        names = ", ".join(i.reference for i in images) or "none"
        hint = "; choose one with --ref" if len(images) > 1 else ""
        raise UsageError(f"{path}: {'no image matches ' + select if select and not images else ''}"
                         f"{len(images)} images ({names}){hint}")
    return images[0]


def _docker(source: TarSource, select: str | None) -> Image:
    try:
        entries: list[dict[str, Any]] = json.loads(source.read("manifest.json") or b"")
        if select:
            entries = [e for e in entries if select in (e.get("RepoTags") or [])]
        if len(entries) != 1:
            raise UsageError(f"{source.path}: {len(entries)} images in manifest.json; choose one with --ref")
        entry = entries[0]
        config_name, layer_names = str(entry["Config"]), [str(n) for n in entry["Layers"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{source.path}: manifest.json is not a docker-archive manifest ({exc})") from None
    config = source.read(config_name)
    if config is None:
        raise UsageError(f"{source.path}: the config {config_name} is missing")
    config_blob = Blob(Digest.of(config), len(config), DOCKER_CONFIG)
    source.by_digest[config_blob.digest] = config_name
    layers = []
    for name in layer_names:
        if name not in source.members:
            raise UsageError(f"{source.path}: the layer {name} is missing")
        digest, media_type = _layer_digest(source, name)
        source.by_digest[digest] = name
        layers.append(Blob(digest, source.members[name][1], media_type))
    manifest = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
                "config": {"mediaType": DOCKER_CONFIG, "size": config_blob.size, "digest": str(config_blob.digest)},
                "layers": [{"mediaType": b.media_type, "size": b.size, "digest": str(b.digest)} for b in layers]}
    data = json.dumps(manifest, indent=3).encode()
    root = Node(Digest.of(data), data, mt.DOCKER_MANIFEST, [config_blob, *layers])
    tags = entry.get("RepoTags") or []
    return Image(str(tags[0]).rsplit(":", 1)[0] if tags else "archive", None, root, source)


def _layer_digest(source: TarSource, name: str) -> tuple[Digest, str]:
    """The digest of a layer member (named in `blobs/sha256/<hex>` archives, else hashed) and its media type."""
    hasher = hashlib.sha256()
    with source.open_member(name) as f:
        magic = f.read(4)
        parts = name.split("/")
        known = None
        if len(parts) == 3 and parts[0] == "blobs":
            try:
                known = Digest.parse(f"{parts[1]}:{parts[2]}")
            except InvalidDigest:
                known = None
        if known is None:
            hasher.update(magic)
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
    media_type = DOCKER_LAYER_GZIP if magic[:2] == b"\x1f\x8b" else DOCKER_LAYER_ZSTD \
        if magic == b"\x28\xb5\x2f\xfd" else DOCKER_LAYER
    return known or Digest("sha256", hasher.hexdigest()), media_type
