"""Deterministic OCI pieces: layer tars, the image config, the manifest, an image layout and its two archives.

Every byte depends only on the inputs: tar entries are sorted by path, owned by uid/gid 0 with empty owner
names (except what `owners` gives), stamped with one mtime (SOURCE_DATE_EPOCH) and written without hard links;
gzip headers carry no name and mtime 0; JSON is written with sorted keys and no spaces.

    layout/                    (OCI image layout)
      oci-layout  index.json  blobs/sha256/<layers, config, manifest>
    k3sreg-<v>.oci.tar         the layout as one tar (skopeo's oci-archive:, `ctr images import`)
    k3sreg-<v>.docker.tar      docker-archive: manifest.json + the same config and gzip layers
                               (`docker load`, `ctr images import`, K3s's agent/images/)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from k3sreg.images.tarball import Member, docker_manifest, write_tar

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
CHUNK = 1 << 20


def canonical_json(doc: Any) -> bytes:
    """JSON with sorted keys and no insignificant whitespace: the same document always gives the same digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int

    def doc(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class Layer:
    """A written gzip layer: its blob descriptor and the digest of the uncompressed tar (the diff_id)."""

    descriptor: Descriptor
    diff_id: str
    entries: int


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to `sink` (None: hash only)."""

    def __init__(self, sink: BinaryIO | None) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)


def walk(root: Path, paths: Iterable[str]) -> list[str]:
    """`paths` (relative to `root`) with every parent directory added, sorted, as tar entry names."""
    names: set[str] = set()
    for rel in paths:
        parts = rel.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            names.add("/".join(parts[:i]))
    names.discard("")
    return sorted(names)


def _tarinfo(root: Path, name: str, mtime: int, owners: Mapping[str, tuple[int, int]]) -> tuple[tarfile.TarInfo, Path]:
    path = root / name
    st = path.lstat()
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = owners.get(name, (0, 0))
    info.uname = info.gname = ""
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    else:
        raise ValueError(f"{path}: only files, directories and symlinks go into an image layer")
    return info, path


def write_layer(root: Path, names: Sequence[str], mtime: int, blobs: Path,
                owners: Mapping[str, tuple[int, int]] | None = None) -> Layer:
    """Write the entries `names` (sorted, relative to `root`) as a gzip layer blob under `blobs`."""
    owners = owners or {}
    tmp = blobs / ".layer.tmp"
    with tmp.open("wb") as out:
        compressed = _HashingWriter(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
            raw = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in names:
                    info, path = _tarinfo(root, name, mtime, owners)
                    if info.type == tarfile.REGTYPE:
                        with path.open("rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
    digest = "sha256:" + compressed.sha.hexdigest()
    tmp.replace(blobs / compressed.sha.hexdigest())
    return Layer(Descriptor(MEDIA_LAYER_GZIP, digest, compressed.size), "sha256:" + raw.sha.hexdigest(), len(names))


def put_blob(blobs: Path, data: bytes, media_type: str) -> Descriptor:
    """Store `data` under its digest in `blobs` and describe it."""
    hexd = hashlib.sha256(data).hexdigest()
    (blobs / hexd).write_bytes(data)
    return Descriptor(media_type, "sha256:" + hexd, len(data))


@dataclass(frozen=True)
class Image:
    """A finished image in an OCI layout: the manifest, config and layer descriptors."""

    layout: Path
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Layer, ...]
    ref_name: str
    image_name: str

    @property
    def blobs(self) -> Path:
        return self.layout / "blobs" / "sha256"


def finish_layout(layout: Path, config: dict[str, Any], layers: Sequence[Layer], ref_name: str, image_name: str,
                  annotations: Mapping[str, str]) -> Image:
    """Write config, manifest, index.json and oci-layout for `layers` already in `layout/blobs/sha256`.

    `ref_name` is the tag (org.opencontainers.image.ref.name), `image_name` the full name containerd gives
    the image on `ctr images import` (io.containerd.image.name).
    """
    blobs = layout / "blobs" / "sha256"
    config_desc = put_blob(blobs, canonical_json(config), MEDIA_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_desc.doc(),
        "layers": [layer.descriptor.doc() for layer in layers],
        "annotations": dict(annotations),
    }
    manifest_desc = put_blob(blobs, canonical_json(manifest), MEDIA_MANIFEST)
    entry = manifest_desc.doc()
    entry["annotations"] = {"org.opencontainers.image.ref.name": ref_name, "io.containerd.image.name": image_name}
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry]}
    (layout / "index.json").write_bytes(canonical_json(index))
    (layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return Image(layout, manifest_desc, config_desc, tuple(layers), ref_name, image_name)


def write_oci_archive(image: Image, out: Path, mtime: int) -> None:
    """The layout as an OCI archive (what `skopeo copy oci-archive:` and `ctr images import` read)."""
    def members() -> Iterator[Member]:
        yield "oci-layout", image.layout / "oci-layout"
        yield "index.json", image.layout / "index.json"
        for path in sorted(image.blobs.iterdir()):
            if not path.name.startswith("."):
                yield f"blobs/sha256/{path.name}", path
    write_tar(out, members(), mtime)


def write_docker_archive(image: Image, out: Path, mtime: int) -> None:
    """A docker-archive (`docker save` format) of the image, tagged `image.image_name`, with the gzip layers.

    No index.json, so containerd's importer names the image from RepoTags as K3s expects for agent/images/.
    """
    layers = [f"blobs/sha256/{layer.descriptor.hex}" for layer in image.layers]

    def members() -> Iterator[Member]:
        yield f"blobs/sha256/{image.config.hex}", image.blobs / image.config.hex
        for layer in image.layers:
            yield f"blobs/sha256/{layer.descriptor.hex}", image.blobs / layer.descriptor.hex
        yield "manifest.json", docker_manifest(f"blobs/sha256/{image.config.hex}", layers, image.image_name)
    write_tar(out, members(), mtime)
