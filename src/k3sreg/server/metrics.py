"""`GET /metrics`: Prometheus text format, summed over every worker process when `--workers` > 1, plus the free
space of the storage filesystem (`k3sreg_storage_free_bytes`, `k3sreg_storage_size_bytes`, read with statvfs at
each scrape; filesystem driver only).

`GET /debug/upstreams`: whether each upstream answers `GET /v2/` now, as JSON (`k3sreg doctor` reads it). One
probe round runs at a time; requests that come meanwhile share its answer, so the endpoint cannot be used to
flood the upstreams.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from k3sreg.server.context import CONTEXT
from k3sreg.upstream.reach import probe_all

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StorageSpace(Collector):
    """Free and total bytes of the filesystem holding `root`, read when scraped."""

    def __init__(self, root: str) -> None:
        self.root = root

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return
        yield GaugeMetricFamily("k3sreg_storage_free_bytes", "Bytes of the storage filesystem available to k3sreg",
                                value=st.f_bavail * st.f_frsize)
        yield GaugeMetricFamily("k3sreg_storage_size_bytes", "Size of the storage filesystem in bytes",
                                value=st.f_blocks * st.f_frsize)


def handler(storage_root: str | None) -> Handler:
    """The /metrics handler; `storage_root` is the filesystem driver's root directory (None: no space gauges)."""
    extra = CollectorRegistry(auto_describe=False)
    if storage_root is not None:
        extra.register(StorageSpace(storage_root))

    async def metrics(request: web.Request) -> web.StreamResponse:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            body = generate_latest(registry)
        else:
            body = generate_latest(REGISTRY)
        return web.Response(body=body + generate_latest(extra), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def upstreams_handler() -> Handler:
    """The /debug/upstreams handler: `{"upstreams": [{name, offline, reachable, detail, seconds}]}`."""
    running: asyncio.Future[list[dict[str, Any]]] | None = None

    async def upstreams(request: web.Request) -> web.StreamResponse:
        nonlocal running
        proxy = request.app[CONTEXT].proxy
        if proxy is None:
            return web.json_response({"upstreams": []})
        if running is None or running.done():
            running = asyncio.ensure_future(probe_all(proxy.upstreams, proxy.clients))
        return web.json_response({"upstreams": await asyncio.shield(running)})

    return upstreams
