"""What the web page shows of a repository, read so that a page costs the same with 10 or 10,000 of them.

    summary(name)          its tags (TagStore's remembered list) and when they last changed: a few stats and
                           one listing, no manifest read
    tag_rows(name, tags)   for the tags shown only: digest, kind, size per platform, pushed, pulled, referrers

Times come from the link files: a tag's `current` link is written when it is pushed (in a cache repository
also when the upstream confirms it), and a manifest's revision link is touched when it is pulled (the access
clock, at most once a minute per manifest). Stored bytes are read as untrusted (a registry:2 volume may hold
anything): a manifest that does not parse is shown as `unknown`, never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from k3sreg import errors
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest, InvalidDigest
from k3sreg.oci.manifest import InvalidManifest, Manifest, parse_manifest
from k3sreg.storage import paths
from k3sreg.storage.manifests import ManifestStore

IMAGE_CONFIGS = frozenset({"application/vnd.oci.image.config.v1+json",
                           "application/vnd.docker.container.image.v1+json"})
_CONFIG_MAX = 1 << 20  # a config larger than this is not read for its platform
_NEWEST_OF = 16  # tags compared by push time for the list's pull command
_PULL_SLACK = 2.0  # a revision link touched within this of the push is the push itself, not a pull


@dataclass(frozen=True, slots=True)
class RepoSummary:
    """A repository as the list shows it: its tags (sorted), when a tag or manifest was last added or removed
    (None when unknown), and the tag to show a pull command for (`latest`, else the last pushed)."""

    name: str
    tags: list[str]
    changed: float | None
    newest: str | None = None


@dataclass(frozen=True, slots=True)
class Platform:
    """One image of a tag: `name` such as linux/arm64/v8 ("" when unknown), and the bytes a pull of it moves
    (config and layers, as stored: compressed)."""

    name: str
    size: int
    digest: Digest


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest whose subject is a tag's manifest: a signature, an SBOM, an attestation."""

    digest: Digest
    artifact_type: str
    size: int
    annotations: dict[str, str]


@dataclass(frozen=True, slots=True)
class TagRow:
    """A tag as the repository page shows it; `kind` is image, index, artifact or unknown."""

    tag: str
    digest: Digest | None
    kind: str
    media_type: str = ""
    artifact_type: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    platforms: list[Platform] = field(default_factory=list)
    pushed: float | None = None
    pulled: float | None = None
    referrers: list[Referrer] = field(default_factory=list)


class Browser:
    """The reads behind the web page (synchronous: run each call in one of the store's threads)."""

    def __init__(self, manifests: ManifestStore):
        self.manifests = manifests
        self.driver = manifests.driver

    def summary(self, name: str) -> RepoSummary:
        try:
            tags = self.manifests.tags.list(name)
        except errors.NameUnknown:
            tags = []
        times = [info.mtime for path in (paths.tags(name), f"{paths.revisions(name)}/sha256")
                 if (info := self.driver.stat(path)) is not None]
        return RepoSummary(name, tags, max(times) if times else None, self._newest(name, tags))

    def _newest(self, name: str, tags: list[str]) -> str | None:
        """`latest` if there is one, else the tag pushed last among the last `_NEWEST_OF` (one stat each)."""
        if not tags or "latest" in tags:
            return "latest" if tags else None
        pushed = [(self._mtime(paths.tag_current_link(name, t)) or 0.0, t) for t in tags[-_NEWEST_OF:]]
        return max(pushed)[1]

    def tag_rows(self, name: str, tags: list[str]) -> list[TagRow]:
        return [self._row(name, tag) for tag in tags]

    def _row(self, name: str, tag: str) -> TagRow:
        d = self.manifests.tags.current(name, tag)
        if d is None:
            return TagRow(tag, None, "unknown")
        pushed = self._mtime(paths.tag_current_link(name, tag))
        pulled = self._mtime(paths.revision_link(name, d))
        if pulled is not None and (pushed is None or pulled - pushed < _PULL_SLACK):
            pulled = None
        referrers = self.referrers(name, d)
        try:
            stored = self.manifests.load(d)
            parsed = parse_manifest(stored.data, stored.media_type)
        except (errors.RegistryError, InvalidManifest):
            return TagRow(tag, d, "unknown", pushed=pushed, pulled=pulled, referrers=referrers)
        kind, platforms = self._describe(parsed, d)
        return TagRow(tag, d, kind, parsed.media_type, _artifact_type(parsed), dict(parsed.annotations or {}),
                      platforms, pushed, pulled, referrers)

    def _describe(self, m: Manifest, d: Digest) -> tuple[str, list[Platform]]:
        if m.media_type in mt.INDEXES:
            out = []
            for child in m.manifests:
                platform = _platform_name(child.platform or {})
                size = self._image_size(child.digest)
                out.append(Platform(platform, size if size is not None else child.size, child.digest))
            return "index", out
        if _artifact_type(m):
            return "artifact", [Platform("", sum(b.size for b in m.blobs), d)]
        return "image", [Platform(self._config_platform(m), sum(b.size for b in m.blobs), d)]

    def _image_size(self, d: Digest) -> int | None:
        try:
            stored = self.manifests.load(d)
            return sum(b.size for b in parse_manifest(stored.data, stored.media_type).blobs)
        except (errors.RegistryError, InvalidManifest):
            return None  # a child not pulled into this cache (yet), or unreadable

    def _config_platform(self, m: Manifest) -> str:
        if not m.blobs or m.blobs[0].size > _CONFIG_MAX:
            return ""
        try:
            config = json.loads(self.manifests.blobs.get_small(m.blobs[0].digest))
        except (errors.RegistryError, ValueError):
            return ""
        return _platform_name(config) if isinstance(config, dict) else ""

    def referrers(self, name: str, subject: Digest) -> list[Referrer]:
        try:
            found = self.manifests.referrers(name, subject, None)
        except (errors.RegistryError, InvalidDigest):
            return []
        return [Referrer(r.digest, r.artifact_type or r.media_type, r.size, dict(r.annotations or {}))
                for r in found]

    def _mtime(self, path: str) -> float | None:
        info = self.driver.stat(path)
        return info.mtime if info is not None else None


def _artifact_type(m: Manifest) -> str:
    """The artifact type of a manifest that is not a plain image ("" for an image or an index)."""
    if m.artifact_type and m.artifact_type not in IMAGE_CONFIGS:
        return m.artifact_type
    return ""


def _platform_name(doc: dict[str, object]) -> str:
    parts = [doc.get("os"), doc.get("architecture"), doc.get("variant")]
    return "/".join(p for p in parts if isinstance(p, str) and p)
