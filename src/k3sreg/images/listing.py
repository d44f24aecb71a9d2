"""`images ls`: the repositories of a registry, their tags, and for each the digest, the platforms and the size
(config and layers of every platform, each blob counted once), read from the manifests alone."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from k3sreg.client import RegistryClient
from k3sreg.errors import K3sregError, ManifestUnknown, NameUnknown
from k3sreg.images.model import make_node
from k3sreg.images.platforms import Platform


@dataclass(frozen=True)
class Row:
    """One tag of one repository."""

    repository: str
    tag: str
    digest: str
    media_type: str
    platforms: tuple[str, ...]
    size: int

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "platforms": list(self.platforms)}


async def list_registry(client: RegistryClient, repositories: list[str] | None = None, jobs: int = 8) -> list[Row]:
    """A row per tag of `repositories` (every repository of the catalog when None), sorted."""
    repos = repositories if repositories is not None else await client.catalog()
    gate = asyncio.Semaphore(jobs)

    async def tags(repo: str) -> list[str]:
        async with gate:
            try:
                return await client.list_tags(repo)
            except NameUnknown:
                return []

    async def row(repo: str, tag: str) -> Row | None:
        async with gate:
            try:
                got = await client.get_manifest(repo, tag)
            except (ManifestUnknown, NameUnknown):
                return None
        node, children = make_node(got.data, got.media_type, got.digest, f"{repo}:{tag}")
        sizes = {b.digest: b.size for b in node.blobs}
        platforms = []
        for digest, platform in children:
            found = Platform.of(platform)
            if found is None:
                continue  # attestations and other artifacts listed in an index
            platforms.append(str(found))
            async with gate:
                try:
                    child = await client.get_manifest(repo, str(digest))
                except (ManifestUnknown, NameUnknown):
                    continue
            sub, _ = make_node(child.data, child.media_type, child.digest, f"{repo}@{digest}")
            sizes.update({b.digest: b.size for b in sub.blobs})
        if not node.is_index:
            platforms = await _platform_of_image(client, repo, node.blobs[0].digest) if node.blobs else []
        return Row(repo, tag, str(got.digest), node.media_type, tuple(platforms), sum(sizes.values()))

    all_tags = await asyncio.gather(*(tags(r) for r in repos))
    rows = await asyncio.gather(*(row(r, t) for r, ts in zip(repos, all_tags, strict=True) for t in ts))
    return sorted((r for r in rows if r is not None), key=lambda r: (r.repository, r.tag))


async def _platform_of_image(client: RegistryClient, repo: str, config: object) -> list[str]:
    """The os/architecture of a single image, from its config blob (small JSON)."""
    import json

    try:
        async with client.open_blob(repo, config) as body:  # type: ignore[arg-type]
            data = b"".join([chunk async for chunk in body])
        doc = json.loads(data[:1 << 20])
        found = Platform.of(doc) if isinstance(doc, dict) else None
    except (K3sregError, ValueError):
        return []
    return [str(found)] if found else []
