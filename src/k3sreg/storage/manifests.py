"""Manifests and referrers of a repository, in Distribution's layout (plus our `_referrers` index); tags in `tags`.

A manifest becomes visible in this order: its bytes in the global blob store, the revision link, the
referrers link (when it has a subject), the tag's index link, and last the tag's `current` link. Whatever a
crash interrupts, a reader sees the old state or the new one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from k3sreg import errors
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest, InvalidDigest, is_digest
from k3sreg.oci.manifest import Descriptor, InvalidManifest, Manifest, UnsupportedMediaType, load_json, parse_manifest
from k3sreg.oci.names import is_valid_tag
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.links import digests_under, read_link, write_link
from k3sreg.storage.tags import TagStore

_FOREIGN = ("foreign", "nondistributable")


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A manifest as served: the exact stored bytes, their digest and media type."""

    digest: Digest
    data: bytes
    media_type: str
    parsed: Manifest | None = None

    @property
    def size(self) -> int:
        return len(self.data)


class _ManifestCache:
    """Manifests by digest are immutable: keep recently served ones in memory, bounded by bytes."""

    def __init__(self, max_bytes: int):
        self._max, self._used = max_bytes, 0
        self._items: OrderedDict[Digest, StoredManifest] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, d: Digest) -> StoredManifest | None:
        with self._lock:
            item = self._items.get(d)
            if item is not None:
                self._items.move_to_end(d)
            return item

    def put(self, m: StoredManifest) -> None:
        with self._lock:
            if m.digest in self._items or m.size > self._max:
                return
            self._items[m.digest] = m
            self._used += m.size
            while self._used > self._max:
                _, old = self._items.popitem(last=False)
                self._used -= old.size


def is_foreign(blob: Descriptor) -> bool:
    """Whether a layer lives outside registries by design (Windows base layers): never stored, never needed."""
    return any(word in blob.media_type for word in _FOREIGN)


def needed(m: Manifest) -> list[Digest]:
    """What a manifest needs in the store: its config and layers (foreign ones aside), its child manifests."""
    return [b.digest for b in m.blobs if not is_foreign(b)] + [c.digest for c in m.manifests]


def media_type_of(data: bytes) -> str:
    """The media type a stored manifest declares (or implies, for OCI documents without one)."""
    try:
        doc = load_json(data)
    except InvalidManifest:
        return mt.OCI_MANIFEST
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    if isinstance(doc, dict) and "manifests" in doc:
        return mt.OCI_INDEX
    if isinstance(doc, dict) and doc.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1_SIGNED
    return mt.OCI_MANIFEST


class ManifestStore:
    """Manifests and referrers on top of the BlobStore, tags through `tags` (synchronous; run in threads)."""

    def __init__(self, blobs: BlobStore, cache_bytes: int = 32 << 20):
        self.blobs = blobs
        self.driver = blobs.driver
        self.tags = TagStore(self.driver)
        self._cache = _ManifestCache(cache_bytes)

    # --- read ------------------------------------------------------------------------------------------
    def resolve(self, repo: str, reference: str) -> Digest:
        """The digest a tag or digest reference names in `repo`; MANIFEST_UNKNOWN when there is none."""
        if is_digest(reference):
            try:
                d = Digest.parse(reference)
            except InvalidDigest as e:
                raise errors.DigestInvalid(str(e)) from None
            if read_link(self.driver, paths.revision_link(repo, d)) != d:
                raise errors.ManifestUnknown(detail={"digest": reference})
            return d
        if not is_valid_tag(reference):
            # Reads answer 404 for a reference that cannot exist, as Distribution does; writes say TAG_INVALID.
            raise errors.ManifestUnknown(f"no manifest is named {reference!r}", detail={"reference": reference})
        d_tag = self.tags.current(repo, reference)
        if d_tag is None or read_link(self.driver, paths.revision_link(repo, d_tag)) != d_tag:
            raise errors.ManifestUnknown(detail={"tag": reference})
        return d_tag

    def load(self, d: Digest) -> StoredManifest:
        """The stored bytes of manifest `d` (cached: content by digest never changes)."""
        cached = self._cache.get(d)
        if cached is not None:
            return cached
        try:
            data = self.blobs.get_small(d)
        except errors.BlobUnknown:
            raise errors.ManifestUnknown(detail={"digest": str(d)}) from None
        m = StoredManifest(d, data, media_type_of(data))
        self._cache.put(m)
        return m

    def get(self, repo: str, reference: str) -> StoredManifest:
        return self.load(self.resolve(repo, reference))

    def referrers(self, repo: str, subject: Digest, artifact_type: str | None) -> list[Descriptor]:
        """Descriptors of the manifests in `repo` whose subject is `subject`, optionally filtered."""
        out: list[Descriptor] = []
        found = digests_under(self.driver, paths.referrers_dir(repo, subject))
        for d in sorted(found, key=lambda d: (d.algorithm, d.hex)):
            if read_link(self.driver, paths.revision_link(repo, d)) != d:
                continue
            stored = self.load(d)
            try:
                parsed = parse_manifest(stored.data, stored.media_type)
                desc = Descriptor(stored.media_type, d, stored.size, parsed.artifact_type, parsed.annotations)
            except InvalidManifest:  # stored before a stricter check: list it, without what it cannot tell
                desc = Descriptor(stored.media_type, d, stored.size)
            if artifact_type is None or desc.artifact_type == artifact_type:
                out.append(desc)
        return out

    def revisions(self, repo: str) -> list[Digest]:
        """The manifests `repo` holds (tagged or not), by their directories (a deleted one may have left its
        directory behind: see `linked`)."""
        return list(digests_under(self.driver, paths.revisions(repo)))

    def linked(self, repo: str) -> list[Digest]:
        """The manifests `repo` holds, each checked by its link: Distribution deletes a manifest by removing
        the link alone, and leaves its directory."""
        return [d for d in self.revisions(repo) if read_link(self.driver, paths.revision_link(repo, d)) == d]

    def accessed(self, repo: str, d: Digest) -> float:
        """When `repo`'s revision link to `d` was last touched (written, or pulled from a cache); 0 when none."""
        info = self.driver.stat(paths.revision_link(repo, d))
        return info.mtime if info else 0.0

    # --- write -----------------------------------------------------------------------------------------
    def put(self, repo: str, reference: str, data: bytes, content_type: str | None,
            check_references: bool = True) -> StoredManifest:
        """Validate and store a pushed manifest under a tag or its digest; returns what was stored.

        The pull-through cache stores manifests before their blobs (those are fetched when asked for), so it
        passes `check_references=False`.
        """
        tag: str | None = None
        d = Digest.of(data)
        if is_digest(reference):
            try:
                given = Digest.parse(reference)
            except InvalidDigest as e:
                raise errors.DigestInvalid(str(e)) from None
            if given.algorithm != "sha256":
                d = Digest.of(data, given.algorithm)
            if d != given:
                raise errors.DigestInvalid(detail={"expected": reference, "actual": str(d)})
        else:
            if not is_valid_tag(reference):
                raise errors.TagInvalid(f"invalid tag {reference!r}")
            tag = reference
        try:
            parsed = parse_manifest(data, content_type)
        except UnsupportedMediaType as e:
            raise errors.ManifestInvalid(str(e)) from None
        except InvalidManifest as e:
            raise errors.ManifestInvalid(str(e)) from None
        # Held from the check to the last link (see `guard`): a garbage collection cannot take what the
        # manifest needs in between, nor the manifest itself while it is being tagged.
        with self.blobs.guard.hold([*needed(parsed), d]) as held:
            if check_references:
                self._check_references(repo, parsed, held.present)
            if d not in held.present:
                self.blobs.put_small(d, data)
                held.try_take(d)
            write_link(self.driver, paths.revision_link(repo, d), d)
            if parsed.subject is not None:
                write_link(self.driver, paths.referrer_link(repo, parsed.subject.digest, d), d)
            if tag is not None:
                self.tags.point(repo, tag, d)
        stored = StoredManifest(d, data, parsed.media_type, parsed)
        self._cache.put(StoredManifest(d, data, parsed.media_type))
        return stored

    def _check_references(self, repo: str, m: Manifest, present: set[Digest]) -> None:
        missing: list[str] = []
        for blob in m.blobs:
            if is_foreign(blob):
                continue
            if read_link(self.driver, paths.layer_link(repo, blob.digest)) != blob.digest or \
                    blob.digest not in present:
                missing.append(str(blob.digest))
        for child in m.manifests:
            if read_link(self.driver, paths.revision_link(repo, child.digest)) != child.digest:
                missing.append(str(child.digest))
        if missing:
            raise errors.ManifestBlobUnknown(detail={"digests": missing})

    def delete(self, repo: str, reference: str) -> None:
        """Delete a tag, or a manifest by digest together with every tag that points at it."""
        if not is_digest(reference):
            if not is_valid_tag(reference):
                raise errors.TagInvalid(f"invalid tag {reference!r}")
            self.tags.delete(repo, reference)
            return
        d = self.resolve(repo, reference)
        self.tags.untag(repo, d)
        try:
            parsed = parse_manifest(self.load(d).data, None)
        except (InvalidManifest, errors.ManifestUnknown):
            parsed = None
        if parsed is not None and parsed.subject is not None:
            self.driver.delete(paths.referrer_dir(repo, parsed.subject.digest, d))
        self.driver.delete(paths.revision_dir(repo, d))
