"""Eviction of cached content: by last access (`ttl`) and, optionally, a size cap (`maxsize`) per upstream.

Last access is what the store's access clock recorded (a pull of a manifest or a blob). A run, in one worker
thread, first marks what every manifest of the store needs (storage.mark: each manifest is read once), then:
  1. deletes cached manifests nobody pulled for `ttl` (their tags go with them);
  2. unlinks cached blobs that no remaining manifest references, in ANY repository (cached or pushed), and
     that nobody pulled for `ttl`;
  3. while the upstream's cache is over `maxsize`, deletes its least recently pulled manifest, and unlinks the
     cached blobs that no remaining manifest references (any age);
  4. removes the bytes of what it unlinked or deleted, once nothing links or references them.
The mark is kept up to date as manifests go, never taken again, so a run costs the size of the store plus the
number of deletions. An image is never broken by the eviction of another image that shares a layer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.oci.digest import Digest
from k3sreg.storage.inventory import Inventory
from k3sreg.storage.mark import Mark

log = logging.getLogger("k3sreg.upstream")


@dataclass
class Report:
    manifests: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    freed: int = 0
    candidates: set[Digest] = field(default_factory=set)  # unlinked blobs and deleted manifests: bytes may go


class Evictor:
    """Runs eviction for the upstreams that set `ttl` or `maxsize`."""

    def __init__(self, inventory: Inventory, upstreams: list[UpstreamSettings], proxy_name: str | None):
        self.inventory = inventory
        self.upstreams = [u for u in upstreams if u.ttl or u.maxsize]
        self.proxy_name = proxy_name

    def run(self, now: float | None = None) -> Report:
        now = time.time() if now is None else now
        report = Report()
        if not self.upstreams:
            return report
        began = self.inventory.clock()
        repos = self.inventory.repositories()
        mark = self.inventory.mark(repos)
        for upstream in self.upstreams:
            mine = [r for r in repos if self._owns(upstream, r)]
            self._expire_manifests(upstream, mine, now, report, mark)
            self._unlink_by_age(upstream, mine, now, report, mark)
            if upstream.maxsize:
                self._cap(upstream, mine, report, mark)
        for d, size in self.inventory.remove_unlinked(report.candidates, mark, began):
            report.blobs.append(str(d))
            report.freed += size
        if report.manifests or report.blobs:
            log.info("eviction: removed %d manifests and %d blobs (%d bytes)", len(report.manifests),
                     len(report.blobs), report.freed)
        return report

    def _owns(self, upstream: UpstreamSettings, repo: str) -> bool:
        return self.owns(upstream, repo, self.proxy_name)

    @staticmethod
    def owns(upstream: UpstreamSettings, repo: str, proxy_name: str | None) -> bool:
        """Whether `repo` holds `upstream`'s cached content."""
        # The `proxy:` upstream caches under plain names: as in registry:2's proxy mode, the store is its cache.
        return upstream.name == proxy_name or repo.startswith(f"{upstream.name}/")

    def _delete_manifest(self, repo: str, d: Digest, report: Report, mark: Mark) -> list[Digest] | None:
        """Delete manifest `d` of `repo`; the digests that nothing kept needs any more since, None when it was
        not there."""
        if not self.inventory.delete_manifest(repo, d):
            return None
        report.manifests.append(f"{repo}@{d}")
        report.candidates.add(d)
        return mark.drop(repo, d)

    def _expire_manifests(self, upstream: UpstreamSettings, mine: list[str], now: float, report: Report,
                          mark: Mark) -> None:
        if not upstream.ttl:
            return
        for accessed, repo, d in self.inventory.manifests_of(mine):
            if now - accessed > upstream.ttl:
                self._delete_manifest(repo, d, report, mark)

    def _unlink_by_age(self, upstream: UpstreamSettings, mine: list[str], now: float, report: Report,
                       mark: Mark) -> None:
        if not upstream.ttl:
            return
        for repo in mine:
            for d in self.inventory.layers_of(repo):
                if not mark.kept(d) and now - self.inventory.layer_accessed(repo, d) > upstream.ttl:
                    self.inventory.unlink_layer(repo, d)
                    report.candidates.add(d)

    def _cap(self, upstream: UpstreamSettings, mine: list[str], report: Report, mark: Mark) -> None:
        """Least recently pulled manifests go until the cache fits; measured once, then kept up to date."""
        usage = self.inventory.usage(mine)
        if usage.total <= upstream.maxsize:
            return
        linked: dict[Digest, list[str]] = {}  # the cached blobs, by the repositories that link them
        for repo in mine:
            for d in self.inventory.layers_of(repo):
                linked.setdefault(d, []).append(repo)
        unneeded: list[Digest] | None = None  # None: every linked blob is yet to be checked against the mark
        for _, repo, d in sorted(self.inventory.manifests_of(mine)):
            if usage.total <= upstream.maxsize:
                break
            freed = self._delete_manifest(repo, d, report, mark)
            if freed is not None:
                usage.unlinked(d)
            unneeded = list(linked) if unneeded is None else freed or []
            for blob in unneeded:
                if mark.kept(blob):
                    continue
                for holder in linked.pop(blob, ()):
                    self.inventory.unlink_layer(holder, blob)
                    usage.unlinked(blob)
                    report.candidates.add(blob)
