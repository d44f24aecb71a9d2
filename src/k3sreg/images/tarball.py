"""Deterministic tar archives: the OCI archives K3s imports from `agent/images/`, and k3sreg's own image
archives (`make image`: image/oci.py writes its oci-archive and docker-archive with `write_tar`).

Every entry is stamped with one mtime, mode 0644 (directories 0755, added before their first file), owner 0
with no names, in the order given, in PAX format; the file appears only complete (written as `.tmp`, renamed).

A K3s tarball holds one image as an OCI layout: `oci-layout`, `index.json` (one entry, named by
`io.containerd.image.name` so containerd and K3s import it under its full name) and the blobs. K3s imports
every platform an index lists (`WithAllPlatforms`), so an index that a platform filter left incomplete is
replaced, in the tarball only, by a new index of the platforms present (the platform manifests keep their
digests).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from k3sreg.errors import K3sregError
from k3sreg.images.model import CONTAINERD_NAME, REF_NAME, Image, LocalBlobSource, Node
from k3sreg.images.trees import filtered_index
from k3sreg.localfiles import replacing
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest

Opener = Callable[[], BinaryIO]
Member = tuple[str, "Path | bytes | tuple[int, Opener]"]
COPY_BUFFER = 1 << 20


def write_tar(out: Path, members: Iterable[Member], mtime: int) -> None:
    """A plain tar of `members` (name and a file, bytes, or (size, opener)) in the given order."""
    with replacing(out) as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.copybufsize = COPY_BUFFER  # type: ignore[attr-defined]
        dirs: set[str] = set()
        for name, source in members:
            parent = name.rpartition("/")[0]
            parts = parent.split("/") if parent else []
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, mtime
            if isinstance(source, bytes):
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
                continue
            if isinstance(source, Path):
                info.size = source.stat().st_size
                opener: Opener = lambda path=source: path.open("rb")  # type: ignore[misc]  # noqa: E731
            else:
                info.size, opener = source
            with opener() as f:
                tar.addfile(info, f)


def docker_manifest(config: str, layers: list[str], name: str) -> bytes:
    """The `manifest.json` of a docker-archive (what `docker save` writes) for one image tagged `name`."""
    doc = [{"Config": config, "RepoTags": [name], "Layers": layers}]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def tarball_name(reference: str) -> str:
    """A file name for an image's tarball: `docker.io_library_nginx_1.27.tar`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", reference).strip("_") + ".tar"


def k3s_members(image: Image, source: LocalBlobSource) -> Iterator[Member]:
    """The members of the K3s tarball of `image`, read from `source` (a layout or a bundle)."""
    root = filtered_index(image.root)
    seen: set[Digest] = set()
    blobs: list[Member] = []
    for node in root.nodes():
        for blob in node.blobs:
            if blob.digest not in seen:
                seen.add(blob.digest)
                blobs.append((f"blobs/sha256/{blob.digest.hex}",
                              (blob.size, lambda b=blob: source.open_file(b))))  # type: ignore[misc]
    manifests = _manifest_members(root, seen)
    entry = {"mediaType": root.media_type, "digest": str(root.digest), "size": len(root.data),
             "annotations": {CONTAINERD_NAME: image.reference, REF_NAME: image.reference}}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
    yield "oci-layout", b'{"imageLayoutVersion":"1.0.0"}'
    yield "index.json", json.dumps(index, separators=(",", ":")).encode()
    yield from manifests
    yield from blobs


def _manifest_members(root: Node, seen: set[Digest]) -> list[Member]:
    out: list[Member] = []
    for node in root.nodes():
        if node.digest not in seen:
            seen.add(node.digest)
            out.append((f"blobs/sha256/{node.digest.hex}", node.data))
    return out


def write_k3s_tarballs(images: Iterable[Image], directory: Path, mtime: int = 0) -> list[Path]:
    """One OCI archive per image in `directory` (K3s's agent/images/), named after the image; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for image in images:
        source = image.source
        if not isinstance(source, LocalBlobSource):
            raise K3sregError(f"{image.reference}: its blobs are not on this machine; export or sync it to a "
                              "layout first")
        out = directory / tarball_name(image.reference)
        write_tar(out, k3s_members(image, source), mtime)
        written.append(out)
    return written
