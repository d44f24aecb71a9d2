"""What `k3sreg images` moves: images (a name, a tag, a tree of manifests), the blobs under them, and where the
bytes come from.

    Image  docker.io/library/nginx : 1.27
      └ Node  index sha256:aa..   (complete=False when a platform filter left children out)
          ├ Node  manifest linux/amd64 ── Blob config, Blob layer, Blob layer
          ├ Node  manifest linux/arm64 ── ...
          └ referrers: Node (a signature whose subject is the index) ...

Manifest bytes are kept exactly as the source served them, so every digest stays the source's. A `BlobSource`
streams a blob from an offset (a registry with a Range request, a file, a bundle's frame), which is how an
interrupted copy resumes without fetching again what it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from k3sreg.errors import UsageError
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.oci.manifest import InvalidManifest, parse_manifest

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    """A config or layer: what a registry must hold before a manifest naming it can be stored."""

    digest: Digest
    size: int
    media_type: str


@dataclass
class Node:
    """A manifest with the bytes the source served, its blobs (an image) or its copied children (an index)."""

    digest: Digest
    data: bytes
    media_type: str
    blobs: list[Blob] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    complete: bool = True  # an index whose every child is copied
    platform: str = ""
    referrers: list[Node] = field(default_factory=list)

    def nodes(self) -> Iterator[Node]:
        """Every manifest below and including this one, children before parents, referrers after subjects."""
        for child in self.children:
            yield from child.nodes()
        yield self
        for referrer in self.referrers:
            yield from referrer.nodes()

    def all_blobs(self) -> Iterator[Blob]:
        """Every blob of the tree (a blob may come more than once)."""
        for node in self.nodes():
            yield from node.blobs

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    def size(self) -> int:
        """Bytes of the manifests and blobs of the tree, each blob counted once."""
        seen: dict[Digest, int] = {}
        for node in self.nodes():
            seen[node.digest] = len(node.data)
            for blob in node.blobs:
                seen[blob.digest] = blob.size
        return sum(seen.values())


def make_node(data: bytes, media_type: str, digest: Digest, where: str) -> tuple[Node, list[tuple[Digest, dict[
        str, object] | None]]]:
    """A node for manifest `data` and the (digest, platform) of the children its index lists; UsageError for a
    document that is no manifest k3sreg copies (Docker schema 1, say)."""
    try:
        parsed = parse_manifest(data, media_type)
    except InvalidManifest as exc:
        raise UsageError(f"{where}: cannot copy this manifest: {exc}") from None
    node = Node(digest, data, parsed.media_type,
                [Blob(b.digest, b.size, b.media_type) for b in parsed.blobs])
    return node, [(c.digest, c.platform) for c in parsed.manifests]


@dataclass
class Image:
    """A tree of manifests under one name (`registry/repository`), tagged `tag` (None: kept by digest only)."""

    name: str
    tag: str | None
    root: Node
    source: BlobSource
    source_repo: str = ""  # the repository the source knows it under

    @property
    def reference(self) -> str:
        """`name:tag`, or `name@digest` when there is no tag."""
        return f"{self.name}:{self.tag}" if self.tag else f"{self.name}@{self.root.digest}"


class BlobSource(Protocol):
    """Where the bytes of blobs come from."""

    def stream(self, repo: str, blob: Blob, offset: int = 0) -> AsyncIterator[bytes]:
        """The blob's bytes from `offset` on, in chunks (not verified here: the writer hashes them)."""
        ...



@runtime_checkable
class LocalBlobSource(BlobSource, Protocol):
    """A source whose blobs are on this machine (a layout, a bundle, an archive)."""

    def open_file(self, blob: Blob) -> BinaryIO:
        """A blocking reader of the blob from its start (for writers that run in a thread)."""
        ...


async def stream_file(opener: Callable[[], BinaryIO], offset: int = 0) -> AsyncIterator[bytes]:
    """The bytes of a blocking reader from `offset` on, in CHUNK pieces, each read in a thread."""
    f = await asyncio.to_thread(opener)
    try:
        if offset:
            await asyncio.to_thread(f.read, offset)
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
    finally:
        f.close()


def target_repository(name: str, scoped: bool) -> str:
    """The repository an image named `registry/repository` gets in a target registry: the repository part
    (what containerd asks a mirror for), or the whole name with `scoped`."""
    return name if scoped else name.split("/", 1)[1]
