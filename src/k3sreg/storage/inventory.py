"""What the store holds, repository by repository, with last access: the reads and removals of a sweep.

Eviction works through this view in one worker thread: list what is there, mark what kept manifests need
(`mark`), delete manifests and unlink blobs by its own policy, and finally `remove_unlinked` frees the bytes
nothing links or needs any more, through the same protocol as garbage collection (`guard`): a write that
relied on a blob after the sweep began keeps it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import catalog, paths
from k3sreg.storage.links import digests_under
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.mark import Mark


class Usage:
    """The bytes of the distinct blobs (manifests included) that some repositories link, kept up to date as
    their links go: the size of a cache, measured once."""

    def __init__(self, sizes: dict[Digest, int], links: Counter[Digest]):
        self._sizes, self._links = sizes, links
        self.total = sum(sizes.values())

    def unlinked(self, d: Digest) -> None:
        """One link to `d` in the measured repositories is gone."""
        if self._links.get(d, 0) <= 0:
            return
        self._links[d] -= 1
        if self._links[d] == 0:
            self.total -= self._sizes.pop(d, 0)


class Inventory:
    """Reads and removals for sweeps, on top of a ManifestStore and its BlobStore (synchronous)."""

    def __init__(self, manifests: ManifestStore):
        self.manifests = manifests
        self.blobs = manifests.blobs
        self.driver = manifests.driver

    def repositories(self) -> list[str]:
        """Every repository, also those holding only blobs or uploads."""
        return catalog.repositories(self.driver, catalog.ALL_MARKERS)

    def mark(self, repos: Iterable[str]) -> Mark:
        return Mark.of(self.manifests, repos)

    def manifests_of(self, repos: Iterable[str]) -> list[tuple[float, str, Digest]]:
        """(last access, repository, digest) of every manifest of `repos`."""
        return [(self.manifests.accessed(repo, d), repo, d) for repo in repos for d in self.manifests.revisions(repo)]

    def layers_of(self, repo: str) -> list[Digest]:
        """The blobs linked into `repo`."""
        return list(digests_under(self.driver, paths.layers(repo)))

    def layer_accessed(self, repo: str, d: Digest) -> float:
        """When `repo`'s link to `d` was last touched (written, or pulled from a cache); 0 when there is none."""
        info = self.driver.stat(paths.layer_link(repo, d))
        return info.mtime if info else 0.0

    def delete_manifest(self, repo: str, d: Digest) -> bool:
        """Delete manifest `d` of `repo` and the tags that point at it; False when it was not there."""
        try:
            self.manifests.delete(repo, str(d))
        except errors.ManifestUnknown:
            return False
        return True

    def unlink_layer(self, repo: str, d: Digest) -> None:
        self.blobs.unlink(repo, d)

    def usage(self, repos: Iterable[str]) -> Usage:
        """What the blobs and manifests linked in `repos` take, each digest counted once."""
        links: Counter[Digest] = Counter()
        for repo in repos:
            links.update(self.layers_of(repo))
            links.update(self.manifests.revisions(repo))
        sizes = {}
        for d in links:
            info = self.driver.stat(paths.blob_data(d))
            sizes[d] = info.size if info else 0
        return Usage(sizes, links)

    def clock(self) -> float:
        """T0 of a sweep, on the storage's clock: taken before the mark (see `guard`)."""
        return self.blobs.guard.clock()

    def remove_unlinked(self, candidates: Iterable[Digest], mark: Mark, cutoff: float) -> list[tuple[Digest, int]]:
        """Free the bytes of each candidate that no kept manifest needs, no repository links (as a blob or a
        manifest) and no write relied on after `cutoff` (see `guard`); returns (digest, bytes freed) of those
        removed."""
        doomed = [d for d in candidates if not mark.kept(d)]
        if not doomed:
            return []
        links: dict[Digest, list[str]] = {}
        for repo in self.repositories():
            for d in digests_under(self.driver, paths.layers(repo)):
                links.setdefault(d, []).append(paths.layer_link(repo, d))
            for d in self.manifests.revisions(repo):
                links.setdefault(d, []).append(paths.revision_link(repo, d))
        removed = []
        for d in doomed:
            if any(self.driver.stat(link) for link in links.get(d, ())):
                continue
            freed = self.blobs.guard.sweep(d, cutoff)
            if freed is not None:
                removed.append((d, freed))
        return removed
