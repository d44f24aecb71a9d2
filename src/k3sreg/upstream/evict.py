"""Eviction of cached content: by last access (`ttl`) and, optionally, a size cap (`maxsize`) per upstream.

Last access is the mtime of a manifest's revision link and of a blob's layer link (the cache refreshes them
on every pull). A run, in one worker thread:
  1. deletes cached manifests nobody pulled for `ttl` (their tags go with them);
  2. while the upstream's cache is over `maxsize`, deletes its least recently pulled manifest;
  3. unlinks cached blobs that no remaining manifest references, in ANY repository (cached or pushed), and
     that nobody pulled for `ttl` (any age under step 2), and removes their bytes once nothing links them.
So an image is never broken by the eviction of another image that shares a layer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from k3sreg import errors
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.oci.digest import Digest, InvalidDigest
from k3sreg.oci.manifest import InvalidManifest, parse_manifest
from k3sreg.storage import catalog, paths
from k3sreg.storage.driver import Driver
from k3sreg.storage.manifests import ManifestStore

log = logging.getLogger("k3sreg.upstream")


@dataclass
class Report:
    manifests: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    freed: int = 0
    pending: list[Digest] = field(default_factory=list)  # evicted manifests whose bytes may go too


def _digests(driver: Driver, base: str) -> Iterable[Digest]:
    for alg in driver.list(base):
        for hexd in driver.list(f"{base}/{alg}"):
            try:
                yield Digest.parse(f"{alg}:{hexd}")
            except InvalidDigest:
                continue


def _mtime(driver: Driver, path: str) -> float:
    info = driver.stat(path)
    return info.mtime if info else 0.0


class Evictor:
    """Runs eviction for the upstreams that set `ttl` or `maxsize`."""

    def __init__(self, store: ManifestStore, upstreams: list[UpstreamSettings], proxy_name: str | None):
        self.store, self.driver = store, store.driver
        self.upstreams = [u for u in upstreams if u.ttl or u.maxsize]
        self.proxy_name = proxy_name

    def run(self, now: float | None = None) -> Report:
        now = time.time() if now is None else now
        report = Report()
        repos = catalog.repositories(self.driver, catalog.ALL_MARKERS)
        for upstream in self.upstreams:
            mine = [r for r in repos if self._owns(upstream, r)]
            self._expire_manifests(upstream, mine, now, report)
            self._sweep(upstream, mine, repos, now, report, by_age=True)
            if upstream.maxsize:
                self._cap(upstream, mine, repos, now, report)
        if report.manifests or report.blobs:
            log.info("eviction: removed %d manifests and %d blobs (%d bytes)", len(report.manifests),
                     len(report.blobs), report.freed)
        return report

    def _owns(self, upstream: UpstreamSettings, repo: str) -> bool:
        # The `proxy:` upstream caches under plain names: as in registry:2's proxy mode, the store is its cache.
        return upstream.name == self.proxy_name or repo.startswith(f"{upstream.name}/")

    def _manifests(self, repos: list[str]) -> list[tuple[float, str, Digest]]:
        out = []
        for repo in repos:
            for d in _digests(self.driver, paths.revisions(repo)):
                out.append((_mtime(self.driver, paths.revision_link(repo, d)), repo, d))
        return out

    def _delete_manifest(self, repo: str, d: Digest, report: Report) -> None:
        try:
            self.store.delete(repo, str(d))
        except errors.ManifestUnknown:
            return
        report.manifests.append(f"{repo}@{d}")
        report.pending.append(d)

    def _expire_manifests(self, upstream: UpstreamSettings, mine: list[str], now: float, report: Report) -> None:
        if not upstream.ttl:
            return
        for accessed, repo, d in self._manifests(mine):
            if now - accessed > upstream.ttl:
                self._delete_manifest(repo, d, report)

    def _referenced(self, repos: list[str]) -> set[Digest]:
        """Every digest a manifest in any repository needs: the manifests themselves, configs, layers, children."""
        keep: set[Digest] = set()
        for repo in repos:
            for d in _digests(self.driver, paths.revisions(repo)):
                keep.add(d)
                try:
                    parsed = parse_manifest(self.store.load(d).data, None)
                except (InvalidManifest, errors.ManifestUnknown):
                    continue
                keep.update(b.digest for b in parsed.blobs)
                keep.update(m.digest for m in parsed.manifests)
        return keep

    def _sweep(self, upstream: UpstreamSettings, mine: list[str], repos: list[str], now: float, report: Report,
               by_age: bool) -> None:
        keep = self._referenced(repos)
        doomed: set[Digest] = set()
        for repo in mine:
            for d in _digests(self.driver, f"{paths.repo(repo)}/_layers"):
                if d in keep:
                    continue
                accessed = _mtime(self.driver, paths.layer_link(repo, d))
                if by_age and (not upstream.ttl or now - accessed <= upstream.ttl):
                    continue
                self.driver.delete(paths.layer_dir(repo, d))
                doomed.add(d)
        for d in doomed | set(report.pending):
            self._drop_data_if_unlinked(d, repos, keep, report)
        report.pending.clear()

    def _drop_data_if_unlinked(self, d: Digest, repos: list[str], keep: set[Digest], report: Report) -> None:
        if d in keep or any(self.driver.stat(paths.layer_link(r, d)) or self.driver.stat(paths.revision_link(r, d))
                            for r in repos):
            return
        info = self.driver.stat(paths.blob_data(d))
        if info is None:
            return
        self.driver.delete(paths.blob_dir(d))
        report.blobs.append(str(d))
        report.freed += info.size

    def _cached_size(self, mine: list[str]) -> int:
        seen: set[Digest] = set()
        total = 0
        for repo in mine:
            for d in [*_digests(self.driver, f"{paths.repo(repo)}/_layers"),
                      *_digests(self.driver, paths.revisions(repo))]:
                if d not in seen:
                    seen.add(d)
                    info = self.driver.stat(paths.blob_data(d))
                    total += info.size if info else 0
        return total

    def _cap(self, upstream: UpstreamSettings, mine: list[str], repos: list[str], now: float,
             report: Report) -> None:
        oldest_first = sorted(self._manifests(mine))
        while self._cached_size(mine) > upstream.maxsize and oldest_first:
            _, repo, d = oldest_first.pop(0)
            self._delete_manifest(repo, d, report)
            self._sweep(upstream, mine, repos, now, report, by_age=False)
