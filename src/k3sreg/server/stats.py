"""Figures sampled in the background of every worker, for the metrics and the web page.

    every second        RequestStats.flush: request figures gathered in memory go to the metrics
    every `sample`      SavingsHistory: one point of the bytes saved per upstream (summed over the workers),
                        kept in memory for the savings plot (the last `points` points; a new worker starts empty)
    every `sample` too  the blob bytes of the store (storage.usage), counted by one worker at a time: the one
                        holding an flock in PROMETHEUS_MULTIPROC_DIR (a dead worker's lock passes to another);
                        less often where a count takes long, so that counting keeps under 5% of one thread

`totals()` reads the figures the page shows from the same metric families a scrape gets, so the page and
Prometheus never disagree, whichever worker answers.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from k3sreg.server import metrics
from k3sreg.storage.store import Store
from k3sreg.storage.usage import blob_usage

log = logging.getLogger("k3sreg.server")
COUNT_SHARE = 20
"""Counting the blobs waits at least this many times as long as the last count took."""


@dataclass(slots=True)
class UpstreamTotals:
    """One upstream's figures since the server started."""

    requests: float = 0.0
    hits: float = 0.0
    saved: float = 0.0
    fetched: float = 0.0
    fills: float = 0.0

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.requests if self.requests else None


@dataclass(slots=True)
class Totals:
    """What the page shows of the metrics, summed over the workers."""

    upstreams: dict[str, UpstreamTotals] = field(default_factory=dict)
    gc_runs: float = 0.0
    gc_freed: float = 0.0
    gc_removed: float = 0.0
    blob_bytes: float = 0.0  # as last counted (0 until the first count, made at start-up)
    blobs: float = 0.0
    requests: float = 0.0


_UPSTREAM_FIELDS = {"k3sreg_proxy_requests_total": "requests", "k3sreg_proxy_hits_total": "hits",
                    "k3sreg_proxy_saved_bytes_total": "saved", "k3sreg_proxy_fetched_bytes_total": "fetched",
                    "k3sreg_proxy_fills_in_progress": "fills"}
_TOTAL_FIELDS = {"k3sreg_gc_runs_total": "gc_runs", "k3sreg_gc_freed_bytes_total": "gc_freed",
                 "k3sreg_gc_removed_objects_total": "gc_removed", "k3sreg_http_requests_total": "requests"}


def totals(upstreams: Iterable[str] = ()) -> Totals:
    """The page's figures, from the metric families (the upstreams named are listed even with nothing yet)."""
    out = Totals(upstreams={name: UpstreamTotals() for name in upstreams})
    for family in metrics.families():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name in _UPSTREAM_FIELDS and "upstream" in labels:
                entry = out.upstreams.setdefault(labels["upstream"], UpstreamTotals())
                attr = _UPSTREAM_FIELDS[name]
                setattr(entry, attr, getattr(entry, attr) + value)
            elif name in _TOTAL_FIELDS:
                attr = _TOTAL_FIELDS[name]
                setattr(out, attr, getattr(out, attr) + value)
            elif name == "k3sreg_storage_blob_bytes":
                out.blob_bytes = value
            elif name == "k3sreg_storage_blobs":
                out.blobs = value
    return out


class SavingsHistory:
    """Points (time, bytes saved so far per upstream), oldest first; at most `points` of them."""

    def __init__(self, points: int = 1440):
        self._points: deque[tuple[float, dict[str, float]]] = deque(maxlen=points)

    def add(self, when: float, saved: dict[str, float]) -> None:
        self._points.append((when, dict(saved)))

    def points(self) -> list[tuple[float, dict[str, float]]]:
        return list(self._points)

    def sample(self, upstreams: Iterable[str]) -> None:
        found = totals(upstreams)
        self.add(time.time(), {name: t.saved for name, t in found.upstreams.items()})


_held: list[IO[bytes]] = []


def _counts_here() -> bool:
    """Whether this worker is the one that counts: without workers it is; with them, the one holding the lock
    (kept for the process's life: the kernel lets it go when the process dies)."""
    directory = os.environ.get(metrics.MULTIPROC_ENV)
    if not directory or _held:
        return True
    f = open(os.path.join(directory, "usage.lock"), "ab")  # noqa: SIM115 - held open while the lock is
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _held.append(f)
    return True


async def count_blobs(store: Store) -> float:
    """Count the blob bytes now and set the gauges; returns how many seconds it took."""
    started = time.monotonic()
    usage = await store.run(blob_usage, store.driver)
    metrics.BLOB_BYTES.set(usage.bytes)
    metrics.BLOB_COUNT.set(usage.blobs)
    return time.monotonic() - started


def jobs(store: Store, history: SavingsHistory, upstreams: list[str], sample: float
         ) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """The three loops of the module docstring, for the application to run for its lifetime."""
    async def flush() -> None:
        try:
            while True:
                await asyncio.sleep(1.0)
                metrics.STATS.flush()
        finally:  # what the last answers gathered is not lost when the worker stops
            metrics.STATS.flush()

    async def savings() -> None:
        while True:
            history.sample(upstreams)
            await asyncio.sleep(sample)

    async def blobs() -> None:
        while True:
            took = 0.0
            if _counts_here():
                try:
                    took = await count_blobs(store)
                except Exception:
                    log.exception("counting the storage's blobs failed")
            await asyncio.sleep(max(sample, COUNT_SHARE * took))

    return [flush, savings, blobs]
