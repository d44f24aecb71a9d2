"""The mark of a sweep: which digests the kept manifests need. Eviction and garbage collection use it.

Marking reads and parses every manifest of the store once. A sweep that then deletes manifests tells the
mark (`drop`), which answers which digests no kept manifest needs any more, instead of marking again: the
cost of a sweep grows with the size of the store plus the number of deletions, not with their product.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from k3sreg import errors
from k3sreg.oci.digest import Digest, InvalidDigest
from k3sreg.oci.manifest import InvalidManifest, load_json, parse_manifest
from k3sreg.storage.manifests import ManifestStore, is_foreign


@dataclass(frozen=True, slots=True)
class Needs:
    """What one stored manifest needs, read leniently (a registry:2 volume may hold anything)."""

    blobs: tuple[Digest, ...] = ()       # config and layers, in Distribution's order (schema 1: fsLayers)
    children: tuple[Digest, ...] = ()    # the manifests of an index
    subject: Digest | None = None        # what it is a referrer of (needed by nothing: it needs the subject)
    readable: bool = False               # False: its bytes are missing or no manifest (nothing else is known)
    foreign: frozenset[Digest] = frozenset()  # the layers among `blobs` that live outside registries

    @property
    def refs(self) -> tuple[Digest, ...]:
        return self.blobs + self.children

    @property
    def stored(self) -> tuple[Digest, ...]:
        """The blobs that must be in the store (foreign layers aside)."""
        return tuple(b for b in self.blobs if b not in self.foreign)


def needs_of(data: bytes) -> Needs:
    """What the stored manifest `data` needs; `readable` is False when it cannot be told."""
    try:
        parsed = parse_manifest(data, None)
    except InvalidManifest:
        return _schema1(data)
    return Needs(tuple(b.digest for b in parsed.blobs), tuple(m.digest for m in parsed.manifests),
                 parsed.subject.digest if parsed.subject else None, True,
                 frozenset(b.digest for b in parsed.blobs if is_foreign(b)))


def _schema1(data: bytes) -> Needs:
    # Docker schema 1, which only old registry:2 volumes hold: its layers are the fsLayers' blobSums.
    try:
        doc = load_json(data)
        if doc["schemaVersion"] != 1:
            return Needs()
        return Needs(tuple(Digest.parse(layer["blobSum"]) for layer in doc["fsLayers"]), readable=True)
    except (InvalidManifest, InvalidDigest, KeyError, TypeError):
        return Needs()


def load_needs(manifests: ManifestStore, d: Digest) -> Needs:
    """What manifest `d` needs, from its stored bytes (not readable when they are missing)."""
    try:
        return needs_of(manifests.load(d).data)
    except errors.ManifestUnknown:
        return Needs()


def references(manifests: ManifestStore, d: Digest) -> tuple[Digest, ...]:
    """What manifest `d` needs: itself, its config and layers, its child manifests (only itself when its bytes
    are missing or unreadable)."""
    return (d, *load_needs(manifests, d).refs)


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

    def __len__(self) -> int:
        """How many digests kept manifests need (themselves included)."""
        return len(self._needed)

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


class Needed:
    """What kept manifests need, for a sweep that never takes a kept manifest back (garbage collection): a
    set, which holds each digest once, where Mark also remembers what each manifest needed."""

    def __init__(self) -> None:
        self._needed: set[Digest] = set()

    def keep(self, repo: str, d: Digest, refs: tuple[Digest, ...]) -> None:
        """Manifest `d` of `repo` is kept and needs `refs`."""
        self._needed.update(refs)

    def __len__(self) -> int:
        return len(self._needed)

    def kept(self, d: Digest) -> bool:
        return d in self._needed
