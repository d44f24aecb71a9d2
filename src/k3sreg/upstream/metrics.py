"""Prometheus metrics of the pull-through cache, per upstream (multi-process aware for `--workers`).

The savings: `k3sreg_proxy_saved_bytes_total` counts the bytes served from content the cache already held
(a hit: nothing was asked of the upstream for them); `fetched` what came from the upstream. A client that
joins a download in progress is fed from that one fetch, but counts as served, not saved: the figure is a floor.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

REQUESTS = Counter("k3sreg_proxy_requests_total", "Proxied requests", ["upstream", "kind"])
HITS = Counter("k3sreg_proxy_hits_total", "Proxied requests served from the cache", ["upstream", "kind"])
MISSES = Counter("k3sreg_proxy_misses_total", "Proxied requests that went upstream", ["upstream", "kind"])
STALE = Counter("k3sreg_proxy_stale_total", "Cached tags served because the upstream failed", ["upstream"])
BYTES_SERVED = Counter("k3sreg_proxy_served_bytes_total", "Bytes served for proxied content", ["upstream"])
BYTES_SAVED = Counter("k3sreg_proxy_saved_bytes_total",
                      "Bytes served from the cache without asking the upstream for them (the savings)", ["upstream"])
BYTES_FETCHED = Counter("k3sreg_proxy_fetched_bytes_total", "Bytes fetched from the upstream", ["upstream"])
EVICTED = Counter("k3sreg_proxy_evicted_total", "Cached manifests and blobs evicted", ["upstream", "kind"])
FILLS = Gauge("k3sreg_proxy_fills_in_progress", "Blob downloads from the upstream in progress", ["upstream"],
              multiprocess_mode="livesum")
KINDS = ("manifest", "blob", "tags")


def preset(upstreams: Iterable[str]) -> None:
    """Create every series of `upstreams` at 0: a hit ratio or a rate has data from the first scrape on."""
    for name in upstreams:
        for kind in KINDS:
            REQUESTS.labels(name, kind)
            HITS.labels(name, kind)
            MISSES.labels(name, kind)
        for counter in (STALE, BYTES_SERVED, BYTES_SAVED, BYTES_FETCHED):
            counter.labels(name)
        FILLS.labels(name)
        EVICTED.labels(name, "manifest")
        EVICTED.labels("all", "blob")  # blobs are shared: eviction counts them for every upstream at once


def record(upstream: str, kind: str, result: str) -> None:
    """Count one proxied request: `result` is hit, miss or stale."""
    REQUESTS.labels(upstream, kind).inc()
    if result == "miss":
        MISSES.labels(upstream, kind).inc()
    else:
        HITS.labels(upstream, kind).inc()
    if result == "stale":
        STALE.labels(upstream).inc()
