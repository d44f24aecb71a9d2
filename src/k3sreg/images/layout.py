"""OCI image layouts on disk: written by `sync --to oci:DIR` (and as the spool of `export`), read by `push`,
`export` and an import that has to unpack.

    DIR/oci-layout                {"imageLayoutVersion": "1.0.0"}
    DIR/index.json                one entry per tagged image: the root manifest, with annotations
                                  org.opencontainers.image.ref.name and io.containerd.image.name = the full name
                                  (docker.io/library/nginx:1.27), so one layout holds many repositories
    DIR/blobs/sha256/<hex>        every blob and manifest once
    DIR/blobs/sha256/.<hex>.part  a blob being written; a later run hashes what is there and goes on from its end

A blob file appears only complete and verified (renamed from its `.part`); index.json is replaced atomically.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

from k3sreg.errors import DigestInvalid, UsageError
from k3sreg.images.model import CHUNK, CONTAINERD_NAME, REF_NAME, Blob, Image, Node, stream_file
from k3sreg.images.trees import images_of
from k3sreg.localfiles import write_file
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest, InvalidDigest

LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'


def blob_path(root: Path, digest: Digest) -> Path:
    return root / "blobs" / digest.algorithm / digest.hex


class LayoutWriter:
    """Writes blobs, manifests and tags into the layout at `root` (created when missing)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (root / "oci-layout").exists():
            write_file(root / "oci-layout", LAYOUT_VERSION)
        self.entries: dict[str, dict[str, Any]] = {}
        index = root / "index.json"
        if index.exists():
            for entry in _index_entries(root):
                name = (entry.get("annotations") or {}).get(REF_NAME) or entry.get("digest")
                self.entries[str(name)] = entry

    def has(self, digest: Digest) -> bool:
        return blob_path(self.root, digest).exists()

    def partial(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / f".{digest.hex}.part"

    def tagged(self, name: str) -> Digest | None:
        """The digest `name` (a full `registry/repository:tag`) points at in index.json, if any."""
        entry = self.entries.get(name)
        try:
            return Digest.parse(str(entry["digest"])) if entry else None
        except InvalidDigest:
            return None

    def put_small(self, digest: Digest, data: bytes) -> None:
        """Store a manifest (bytes already checked against `digest`)."""
        path = blob_path(self.root, digest)
        if not path.exists():
            write_file(path, data)

    def tag(self, name: str, digest: Digest, media_type: str, size: int) -> None:
        """Point `name` (full reference) at a manifest and rewrite index.json."""
        self.entries[name] = {"mediaType": media_type, "digest": str(digest), "size": size,
                              "annotations": {REF_NAME: name, CONTAINERD_NAME: name}}
        doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(self.entries.values())}
        write_file(self.root / "index.json", json.dumps(doc, indent=1).encode())


def _index_entries(root: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads((root / "index.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{root}: index.json is missing or not JSON ({exc}); is this an OCI image layout?"
                         ) from None
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{root}/index.json: no 'manifests' list; is this an OCI image layout?")
    return [e for e in entries if isinstance(e, dict)]


class LayoutSource:
    """Reads blobs of the layout at `root` (a BlobSource)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open_file(self, blob: Blob) -> BinaryIO:
        try:
            return blob_path(self.root, blob.digest).open("rb")
        except FileNotFoundError:
            raise UsageError(f"{self.root}: blob {blob.digest} is missing from the layout") from None

    async def stream(self, repo: str, blob: Blob, offset: int = 0) -> AsyncIterator[bytes]:
        del repo
        async for chunk in stream_file(lambda: self.open_file(blob), offset):
            yield chunk

    def read_manifest(self, digest: Digest) -> bytes | None:
        """A manifest's bytes, checked against `digest`; None when the layout does not hold it."""
        try:
            data = blob_path(self.root, digest).read_bytes()
        except FileNotFoundError:
            return None
        if Digest.of(data, digest.algorithm) != digest:
            raise DigestInvalid(f"{self.root}: manifest {digest} does not match its digest; the layout is "
                                "corrupted")
        return data

    def images(self, default_name: str = "") -> list[Image]:
        """Every entry of index.json as an image: named by its io.containerd.image.name or ref.name annotation
        when that is a full reference, else `default_name` (tagged with ref.name)."""
        return images_of((self.root / "index.json").read_bytes() if (self.root / "index.json").exists() else b"",
                         self.read_manifest, self, str(self.root), default_name)


async def write_blob(writer: LayoutWriter, blob: Blob, chunks: AsyncIterator[bytes], offset: int,
                     progress: Callable[[int], Any] | None = None) -> None:
    """Append `chunks` (the blob from `offset` on) to its `.part` file, check the digest, and rename it into
    place. A digest that does not match removes the part and raises DigestInvalid."""
    part = writer.partial(blob.digest)
    hasher = blob.digest.hasher()
    if offset:
        with part.open("rb") as old:
            while data := await asyncio.to_thread(old.read, CHUNK):
                hasher.update(data)
    f = part.open("ab" if offset else "wb")
    try:
        async for chunk in chunks:
            hasher.update(chunk)
            await asyncio.to_thread(f.write, chunk)
            if progress is not None:
                progress(len(chunk))
        await asyncio.to_thread(os.fsync, f.fileno())
    finally:
        f.close()
    if hasher.hexdigest() != blob.digest.hex or part.stat().st_size != blob.size:
        part.unlink(missing_ok=True)
        raise DigestInvalid(f"blob {blob.digest}: the bytes received do not match the digest")
    part.replace(blob_path(writer.root, blob.digest))


class LayoutTarget:
    """An OCI layout to copy into (`--to oci:DIR`): images keep their full names; interrupted blobs resume."""

    def __init__(self, root: Path) -> None:
        self.writer = LayoutWriter(root)
        self.display = f"oci:{root}"

    def repo_for(self, name: str) -> str:
        return name

    def ref_for(self, name: str, tag: str) -> str:
        return f"{self.display}:{name}:{tag}"

    async def tagged(self, repo: str, tag: str) -> Digest | None:
        return self.writer.tagged(f"{repo}:{tag}")

    async def has_manifest(self, repo: str, digest: Digest) -> bool:
        del repo
        return self.writer.has(digest)

    async def put_blob(self, repo: str, blob: Blob, chunks: Callable[[int], AsyncIterator[bytes]],
                       mount_from: str | None, progress: Callable[[int], Any]) -> str:
        del repo, mount_from
        if self.writer.has(blob.digest):
            return "present"
        part = self.writer.partial(blob.digest)
        offset = part.stat().st_size if part.exists() else 0
        if offset > blob.size:
            offset = 0
        if offset:
            progress(offset)
        await write_blob(self.writer, blob, chunks(offset), offset, progress)
        return "resumed" if offset else "copied"

    async def put_manifest(self, repo: str, reference: str, node: Node) -> None:
        self.writer.put_small(node.digest, node.data)
        if ":" not in reference:
            self.writer.tag(f"{repo}:{reference}", node.digest, node.media_type, len(node.data))

    async def close(self) -> None:
        return None
