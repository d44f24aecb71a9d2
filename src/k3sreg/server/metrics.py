"""The server's Prometheus metrics, and `GET /metrics` (Prometheus text format) that serves every metric of k3sreg.

    every answer ──► protocol.AccessLog, once it is sent ──► RequestStats.observe (plain dicts, ~1 µs)
                                                               └─ flush() every second ──► the counters below
    upstream/metrics.py      per upstream: requests, hits, misses, stale, fetched, served, saved, fills in progress
    GC_RUNS, GC_FREED, ...   incremented by the garbage collector (`record_gc`)
    k3sreg_storage_*         the blob bytes (`usage.py`, a periodic count) and the filesystem (statvfs, at scrape)

`GET /debug/upstreams`: whether each upstream answers `GET /v2/` now, as JSON (`k3sreg doctor` reads it). One
probe round runs at a time; requests that come meanwhile share its answer, so the endpoint cannot be used to
flood the upstreams.

Labels never hold a path or a repository name: requests are counted by route kind (`routes.kind`), method and
status, so the number of series stays fixed however many repositories there are.

With `--workers N` every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR and a scrape sums them
(MultiProcessCollector), whichever worker answers it; gauges say how they combine (`multiprocess_mode`). Such a
scrape shows only series that some worker created, so `exposition` adds the HELP and TYPE of every family that
has none yet: each metric is described from start-up.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from k3sreg.config.http import HTTPSettings
from k3sreg.server.context import CONTEXT
from k3sreg.upstream.reach import probe_all

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "k3sreg_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   300.0, float("inf"))
ROUTE_KEY = web.RequestKey("k3sreg_route", str)
"""Request key: a route kind that handlers outside the API set for themselves (the web page: `web`)."""
_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"})

REQUESTS = Counter("k3sreg_http_requests_total", "HTTP requests answered, by route kind, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("k3sreg_http_request_duration_seconds",
                    "Time from a request's arrival to the last byte of its answer, by route kind and method",
                    ["route", "method"], buckets=LATENCY_BUCKETS)
BYTES_IN = Counter("k3sreg_http_request_bytes_total", "Request body bytes received, by route kind", ["route"])
BYTES_OUT = Counter("k3sreg_http_response_bytes_total", "Response bytes sent (headers included), by route kind",
                    ["route"])
GC_RUNS = Counter("k3sreg_gc_runs_total", "Garbage collection runs completed")
GC_FREED = Counter("k3sreg_gc_freed_bytes_total", "Bytes freed by garbage collection")
GC_REMOVED = Counter("k3sreg_gc_removed_objects_total", "Blobs and manifests removed by garbage collection")
# Set by whichever worker counted last (usage.py): the most recent count wins, also after that worker is gone.
BLOB_BYTES = Gauge("k3sreg_storage_blob_bytes", "Bytes of blobs (layers, configs, manifests) in the storage, as last "
                   "counted", multiprocess_mode="mostrecent")
BLOB_COUNT = Gauge("k3sreg_storage_blobs", "Blobs in the storage, as last counted", multiprocess_mode="mostrecent")


def record_gc(freed_bytes: int, removed_objects: int) -> None:
    """Count one finished garbage collection run (the collector calls this once per run)."""
    GC_RUNS.inc()
    GC_FREED.inc(freed_bytes)
    GC_REMOVED.inc(removed_objects)


class RequestStats:
    """Per-request figures gathered in plain dicts and moved to the Prometheus metrics by `flush`.

    A multi-process metric update costs ~7 µs (a lock and an mmap write per value) and a request touches five
    of them: done inline that would add a third to a blob HEAD. Gathered here, a request costs a dict update,
    and a flush a few updates per series."""

    def __init__(self) -> None:
        # (route, method, status) -> [count, seconds, bytes in, bytes out, one count per latency bucket...]
        self._pending: dict[tuple[str, str, str], list[float]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        """Record one answered request."""
        key = (route, method if method in _METHODS else "other", str(status))
        row = self._pending.get(key)
        if row is None:
            row = self._pending[key] = [0.0] * (4 + len(LATENCY_BUCKETS))
        row[0] += 1
        row[1] += seconds
        row[2] += bytes_in
        row[3] += bytes_out
        row[4 + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def flush(self) -> None:
        """Move what was gathered to the metrics (which a scrape reads)."""
        pending, self._pending = self._pending, {}
        for (route, method, status), row in pending.items():
            REQUESTS.labels(route, method, status).inc(row[0])
            if row[2]:
                BYTES_IN.labels(route).inc(row[2])
            if row[3]:
                BYTES_OUT.labels(route).inc(row[3])
            hist: Any = LATENCY.labels(route, method)
            # prometheus_client has no bulk observe; its buckets are plain (non-cumulative) values to add to.
            hist._sum.inc(row[1])
            for i, n in enumerate(row[4:]):
                if n:
                    hist._buckets[i].inc(n)


STATS = RequestStats()


def preset_routes(kinds: Iterable[str]) -> None:
    """Create the byte counters of each route kind at 0, so that rates start from the first scrape."""
    for kind in kinds:
        BYTES_IN.labels(kind)
        BYTES_OUT.labels(kind)


def on_debug_listener(http: HTTPSettings) -> bool:
    """Whether the metrics are served on Distribution's debug listener (`http.debug.addr` with
    `http.debug.prometheus.enabled`) and so, as there, not on the registry's own port."""
    return bool(http.debug and http.debug.addr and http.debug.prometheus.enabled)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def families(extra: Iterable[Metric] = ()) -> list[Metric]:
    """Every metric family with its samples, summed over the workers; families without samples yet are
    listed empty, so their HELP shows (see the module docstring)."""
    STATS.flush()
    if not multiprocess():
        return [*REGISTRY.collect(), *extra]
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    found = list(registry.collect())
    seen = {m.name for m in found}
    for m in REGISTRY.collect():
        if m.name.startswith(PREFIX) and m.name not in seen:
            found.append(Metric(m.name, m.documentation, m.type, m.unit))
    return [*found, *extra]


def filesystem_families(root: str | None) -> list[Metric]:
    """The size and free space of the filesystem under `root` (statvfs: read at each scrape, from any worker)."""
    if root is None:
        return []
    size = GaugeMetricFamily("k3sreg_storage_filesystem_size_bytes", "Size of the filesystem holding the storage")
    free = GaugeMetricFamily("k3sreg_storage_filesystem_free_bytes",
                             "Bytes available to the registry on the filesystem holding the storage")
    try:
        st = os.statvfs(root)
    except OSError:
        return [size, free]
    size.add_metric([], st.f_blocks * st.f_frsize)
    free.add_metric([], st.f_bavail * st.f_frsize)
    return [size, free]


class _Families:
    def __init__(self, found: list[Metric]):
        self.found = found

    def collect(self) -> list[Metric]:
        return self.found


def exposition(root: str | None = None) -> bytes:
    """The text a scrape gets."""
    return generate_latest(_Families(families(filesystem_families(root))))


def handler(root: str | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The `GET /metrics` handler; `root` is the storage directory whose filesystem is reported (or None)."""
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=exposition(root), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def upstreams_handler() -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
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
