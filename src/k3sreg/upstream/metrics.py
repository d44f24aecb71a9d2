"""Prometheus counters of the pull-through cache, per upstream (multi-process aware for `--workers`)."""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter("k3sreg_proxy_requests_total", "Proxied requests", ["upstream", "kind"])
HITS = Counter("k3sreg_proxy_hits_total", "Proxied requests served from the cache", ["upstream", "kind"])
MISSES = Counter("k3sreg_proxy_misses_total", "Proxied requests that went upstream", ["upstream", "kind"])
STALE = Counter("k3sreg_proxy_stale_total", "Cached tags served because the upstream failed", ["upstream"])
BYTES_SERVED = Counter("k3sreg_proxy_served_bytes_total", "Bytes served for proxied content", ["upstream"])
BYTES_FETCHED = Counter("k3sreg_proxy_fetched_bytes_total", "Bytes fetched from the upstream", ["upstream"])
EVICTED = Counter("k3sreg_proxy_evicted_total", "Cached manifests and blobs evicted", ["upstream", "kind"])


def record(upstream: str, kind: str, result: str) -> None:
    """Count one proxied request: `result` is hit, miss or stale."""
    REQUESTS.labels(upstream, kind).inc()
    if result == "miss":
        MISSES.labels(upstream, kind).inc()
    else:
        HITS.labels(upstream, kind).inc()
    if result == "stale":
        STALE.labels(upstream).inc()
