"""All upstreams of one server: their clients, the shared fill coordinator, routing, and eviction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from k3sreg.client.registry import RegistryClient
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.storage.access import AccessClock
from k3sreg.storage.manifests import StoredManifest
from k3sreg.storage.repository import LocalRepository, Repository
from k3sreg.storage.store import Store
from k3sreg.upstream import metrics
from k3sreg.upstream.cache import ProxyRepository
from k3sreg.upstream.evict import Evictor
from k3sreg.upstream.fill import FillCoordinator
from k3sreg.upstream.routing import Router, Target

log = logging.getLogger("k3sreg.upstream")


class ProxyHub:
    """Resolves requests to local or cached repositories and owns the upstream clients."""

    def __init__(self, store: Store, upstreams: Sequence[UpstreamSettings], own_names: Sequence[str],
                 proxy_upstream: UpstreamSettings | None, max_manifest_size: int):
        self.store = store
        self.router = Router(upstreams, own_names, proxy_upstream)
        self.clients = {u.name: RegistryClient(u, max_manifest_size) for u in upstreams}
        self.upstreams = list(upstreams)
        metrics.preset(self.clients)
        self.fills = FillCoordinator(store, lambda name, n: metrics.BYTES_FETCHED.labels(name).inc(n))
        self._flights: dict[tuple[str, str], asyncio.Future[StoredManifest]] = {}
        ttls = [u.ttl for u in upstreams if u.ttl]
        # Record access often enough that eviction sees it: a tenth of the shortest TTL, at most an hour.
        self._access = AccessClock(store, min([t / 10 for t in ttls] + [3600.0]))

    def resolve(self, name: str, ns: str | None) -> Target:
        return self.router.resolve(name, ns)

    def repository(self, target: Target) -> Repository:
        if target.upstream is None:
            return LocalRepository(self.store, target.cache_repo)
        return ProxyRepository(self.store, self.clients[target.upstream.name], self.fills, target,
                               self._flights, target.upstream.tagtimeout, self._access)

    def caches(self, repo: str) -> bool:
        """Whether `repo` is an upstream's cache (its blobs are fetched when asked for; eviction tidies it)."""
        return any(Evictor.owns(u, repo, self.router.proxy_name) for u in self.upstreams)

    async def evict_forever(self) -> None:
        """Run eviction now and then, in whichever worker holds the eviction lock."""
        evictor = Evictor(self.store.inventory(), self.upstreams, self.router.proxy_name)
        if not evictor.upstreams:
            return
        every = max(0.5, min([u.ttl / 4 for u in evictor.upstreams if u.ttl] + [600.0]))
        while True:
            lock = await self.store.claim_eviction()
            if lock is not None:
                try:
                    report = await self.store.run(evictor.run)
                    for entry in report.manifests:
                        metrics.EVICTED.labels(entry.split("/", 1)[0], "manifest").inc()
                    for _ in report.blobs:
                        metrics.EVICTED.labels("all", "blob").inc()
                except Exception:
                    log.exception("eviction failed")
                finally:
                    lock.release()
            await asyncio.sleep(every)

    async def close(self) -> None:
        await self.fills.close()
        for client in self.clients.values():
            await client.close()
