"""From an image list to images: tags listed and filtered, manifests fetched, indexes followed, referrers found.

    entry ─ tags (given, or the registry's tag list filtered by regex / semver range)
          └ GET manifest ─ an index: GET each child the platform filter keeps (the rest: complete=False)
                         └ referrers: the OCI referrers API, or the fallback tag `sha256-<hex>` where the
                           registry has no such API (Distribution 2.8), for every manifest of the tree

Manifests are fetched at most once per repository and digest, up to `jobs` at a time. The result names each
image `registry/repository` as the list does, whatever URL the registry was reached at.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from k3sreg.errors import K3sregError, ManifestUnknown, NameUnknown
from k3sreg.images.events import Quiet, Reporter
from k3sreg.images.lists import Entry
from k3sreg.images.model import Image, Node, make_node
from k3sreg.images.platforms import Platform, wanted
from k3sreg.images.remote import RegistrySource, Sources
from k3sreg.images.trees import filtered_index
from k3sreg.oci.digest import Digest

MAX_DEPTH = 8


class Resolver:
    """Turns list entries into images, reading the source registries through `sources`."""

    def __init__(self, sources: Sources, jobs: int = 8, reporter: Reporter | None = None,
                 new_index: bool = False) -> None:
        self.sources = sources
        self.gate = asyncio.Semaphore(jobs)
        self.reporter = reporter or Quiet()
        self.new_index = new_index
        self._fetched: dict[tuple[str, str, str], asyncio.Task[tuple[bytes, str, Digest]]] = {}

    async def resolve(self, entries: Sequence[Entry]) -> list[Image]:
        """Every image the entries select, in list order; K3sregError naming the entry on the first failure."""
        per_entry = await asyncio.gather(*(self._entry(e) for e in entries))
        seen: set[str] = set()
        out = []
        for images in per_entry:
            for image in images:
                if image.reference not in seen:
                    seen.add(image.reference)
                    out.append(image)
        return out

    async def _entry(self, entry: Entry) -> list[Image]:
        client = self.sources.client(entry.registry)
        source = RegistrySource(client)
        try:
            tags = list(entry.tags) if not entry.pinned else []
            if entry.lists_tags:
                listed = await client.list_tags(entry.repository)
                tags += [t for t in listed if entry.wants(t) and t not in tags]
                if not tags and not entry.digests:
                    self.reporter.event("warning", message=f"{entry.where}: no tag of {entry.name} matches")
            refs: list[tuple[str | None, str]] = [(t, t) for t in tags]
            refs += [(entry.tags[0] if entry.pinned else None, d) for d in entry.digests]
            roots = await asyncio.gather(*(self._tree(entry, ref, 0) for _, ref in refs))
        except (K3sregError, OSError) as exc:
            raise K3sregError(f"{entry.where}: {entry.name}: {exc}") from None
        images = []
        for (tag, _), root in zip(refs, roots, strict=True):
            if self.new_index:
                root = filtered_index(root)
            images.append(Image(entry.name, tag, root, source, entry.repository))
        return images

    async def _manifest(self, entry: Entry, reference: str) -> tuple[bytes, str, Digest]:
        key = (entry.registry, entry.repository, reference)
        if key not in self._fetched:
            async def fetch() -> tuple[bytes, str, Digest]:
                async with self.gate:
                    got = await self.sources.client(entry.registry).get_manifest(entry.repository, reference)
                return got.data, got.media_type, got.digest
            self._fetched[key] = asyncio.ensure_future(fetch())
        return await self._fetched[key]

    async def _tree(self, entry: Entry, reference: str, depth: int, platform: str = "") -> Node:
        data, media_type, digest = await self._manifest(entry, reference)
        node, children = make_node(data, media_type, digest, f"{entry.name}@{digest}")
        node.platform = platform
        if depth > MAX_DEPTH:
            raise K3sregError(f"manifests nested deeper than {MAX_DEPTH} levels")
        keep = [(d, p) for d, p in children if wanted(p, entry.platforms)]
        node.complete = len(keep) == len(children)
        node.children = list(await asyncio.gather(*(
            self._tree(entry, str(d), depth + 1, str(Platform.of(p) or "")) for d, p in keep)))
        if entry.referrers and depth < 2:
            node.referrers = await self._referrers(entry, digest, depth)
        return node

    async def _referrers(self, entry: Entry, digest: Digest, depth: int) -> list[Node]:
        client = self.sources.client(entry.registry)
        async with self.gate:
            found = await client.referrers(entry.repository, digest)
        if found is None:  # no referrers API: the fallback tag of the OCI distribution spec
            try:
                data, _, _ = await self._manifest(entry, f"{digest.algorithm}-{digest.hex}")
            except (ManifestUnknown, NameUnknown):
                return []
            doc = json.loads(data)
            found = [d for d in doc.get("manifests", []) if isinstance(d, dict)]
        digests = [str(d.get("digest")) for d in found if isinstance(d.get("digest"), str)]
        return list(await asyncio.gather(*(self._tree(entry, d, depth + 2) for d in digests)))
