"""The mark of a sweep: which digests the kept manifests need. Eviction uses it; garbage collection will too.

Marking reads and parses every manifest of the store once. A sweep that then deletes manifests tells the
mark (`drop`), which answers which digests no kept manifest needs any more, instead of marking again: the
cost of a sweep grows with the size of the store plus the number of deletions, not with their product.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.oci.manifest import InvalidManifest, parse_manifest
from k3sreg.storage.manifests import ManifestStore


def references(manifests: ManifestStore, d: Digest) -> tuple[Digest, ...]:
    """What manifest `d` needs: itself, its config and layers, its child manifests (only itself when its bytes
    are missing or unreadable)."""
    try:
        parsed = parse_manifest(manifests.load(d).data, None)
    except (InvalidManifest, errors.ManifestUnknown):
        return (d,)
    return (d, *(b.digest for b in parsed.blobs), *(m.digest for m in parsed.manifests))


class Mark:
    """For every digest, how many kept manifests (a manifest is kept per repository) need it."""

    def __init__(self) -> None:
        self._needed: Counter[Digest] = Counter()
        self._refs: dict[tuple[str, Digest], tuple[Digest, ...]] = {}

    @classmethod
    def of(cls, manifests: ManifestStore, repos: Iterable[str]) -> Mark:
        """Mark every manifest of `repos`."""
        mark = cls()
        for repo in repos:
            for d in manifests.revisions(repo):
                mark.keep(repo, d, references(manifests, d))
        return mark

    def keep(self, repo: str, d: Digest, refs: tuple[Digest, ...]) -> None:
        """Count manifest `d` of `repo`, which needs `refs`."""
        if (repo, d) in self._refs:
            return
        self._refs[repo, d] = refs
        self._needed.update(refs)

    def kept(self, d: Digest) -> bool:
        """Whether a kept manifest needs `d` (or is `d`)."""
        return self._needed.get(d, 0) > 0

    def drop(self, repo: str, d: Digest) -> list[Digest]:
        """Manifest `d` of `repo` is gone: the digests nothing kept needs any more because of that."""
        freed: dict[Digest, None] = {}
        for ref in self._refs.pop((repo, d), ()):
            self._needed[ref] -= 1
            if self._needed[ref] <= 0:
                del self._needed[ref]
                freed[ref] = None
        return list(freed)
