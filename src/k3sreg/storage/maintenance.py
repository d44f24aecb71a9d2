"""Garbage collection and scrub in the background of `serve` (`storage.gc`, `storage.scrub`), and what they
report to the rest of the process.

One worker at a time runs each job, across every process on the storage: the job's lock (`_gc/gc.lock`,
`_gc/scrub.lock`) decides who, and the last report (`_gc/gc.json`, `_gc/scrub.json`) decides when, so a job
runs once per `interval` however many workers there are, and restarts do not push it back.

What the rest of the process can read:
    TOTALS                       this process's counters since it started (for metrics: sum them over workers)
    listen(callback)             hear of every report this process makes (a run of either job)
    gc.last_report(driver), scrub.last_report(driver)   the last run of each, whichever worker made it
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from k3sreg.config.storage import GCSettings, ScrubSettings
from k3sreg.storage import gc, paths, scrub
from k3sreg.storage.driver import Lock, PathNotFound
from k3sreg.storage.store import Store

log = logging.getLogger("k3sreg.storage")
_TICK = 60.0  # how often a worker looks whether a job is due


@dataclass
class Totals:
    """Counters of the jobs this process ran (each is the sum of the reports it made)."""

    gc_runs: int = 0
    gc_bytes_freed: int = 0
    gc_manifests_removed: int = 0
    gc_blobs_removed: int = 0
    scrub_runs: int = 0
    scrub_bytes_read: int = 0
    scrub_blobs_checked: int = 0
    scrub_corrupt_found: int = 0
    scrub_problems_found: int = 0

    def add(self, report: gc.Report | scrub.Report) -> None:
        if isinstance(report, gc.Report):
            if report.dry_run:
                return
            self.gc_runs += 1
            self.gc_bytes_freed += report.bytes_freed
            self.gc_manifests_removed += report.manifests_removed
            self.gc_blobs_removed += report.blobs_removed
        else:
            self.scrub_runs += 1
            self.scrub_bytes_read += report.bytes_read
            self.scrub_blobs_checked += report.blobs_checked
            self.scrub_corrupt_found += len(report.corrupt)
            self.scrub_problems_found += report.problem_count


TOTALS = Totals()
Listener = Callable[[gc.Report | scrub.Report], None]
_listeners: list[Listener] = []


def listen(callback: Listener) -> None:
    """Call `callback(report)` after each run this process makes (from the event loop)."""
    _listeners.append(callback)


def _publish(report: gc.Report | scrub.Report) -> None:
    TOTALS.add(report)
    for callback in list(_listeners):
        try:
            callback(report)
        except Exception:
            log.exception("a listener of %s reports failed", type(report).__module__)


async def _every(store: Store, lock_path: str, interval: float, last_started: Callable[[], float | None],
                 job: Callable[[threading.Event], Awaitable[None]], name: str) -> None:
    """Run `job` whenever it is due, in whichever process holds `lock_path`; a cancelled task stops the run."""
    stop = threading.Event()
    try:
        while True:
            lock = None
            try:
                lock = await store.run(_try_lock, store, lock_path)
                if lock is not None:
                    last = await store.run(last_started)
                    if last is None or time.time() - last >= interval:
                        await job(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", name)
            finally:
                if lock is not None:
                    lock.release()
            await asyncio.sleep(min(interval, _TICK))
    finally:
        stop.set()


def _try_lock(store: Store, path: str) -> Lock | None:
    store.driver.put_content(paths.GC_CLOCK, b"", sync=False)  # a lock lives in a directory that exists
    try:
        return store.uploads.locks.try_lock(path)
    except PathNotFound:
        return None


async def collect_forever(store: Store, settings: GCSettings,
                          untagged_in: Callable[[str], bool] | None = None) -> None:
    """Collect garbage every `settings.interval` (see `gc` and `guard`); logs one line per run."""

    def last() -> float | None:
        report = gc.last_report(store.driver)
        return report.started if report is not None else None

    async def job(stop: threading.Event) -> None:
        collector = gc.Collector(store.manifests, delay=settings.delay, delete_untagged=settings.deleteuntagged,
                                 dry_run=settings.dryrun, untagged_in=untagged_in, stop=stop)
        report = await store.run(collector.run)
        await store.run(gc.save_report, store.driver, report)
        log.info("%s", report.line())
        _publish(report)

    await _every(store, paths.GC_LOCK, settings.interval, last, job, "garbage collection")


async def scrub_forever(store: Store, settings: ScrubSettings, lazy: Callable[[str], bool] | None = None) -> None:
    """Scrub every `settings.interval` at `settings.rate` bytes a second; an interrupted pass goes on where it
    stopped. Logs one line per pass, and one per problem found."""

    def last() -> float | None:
        report = scrub.last_report(store.driver)
        return report.started if report is not None else None

    async def job(stop: threading.Event) -> None:
        scrubber = scrub.Scrubber(store.manifests, rate=settings.rate, quarantine=settings.quarantine,
                                  lazy=lazy, stop=stop, resume=True)
        report = await store.run(scrubber.run)
        if report.finished:
            await store.run(scrub.save_report, store.driver, report)
        for problem in report.problems():
            log.warning("scrub: %s", problem)
        log.info("%s", report.line())
        _publish(report)

    await _every(store, paths.SCRUB_LOCK, settings.interval, last, job, "scrub")
