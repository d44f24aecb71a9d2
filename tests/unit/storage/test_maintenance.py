"""The background jobs of `serve`: one worker at a time, once per interval across workers and restarts,
reports heard by listeners and summed in TOTALS, a cancelled task stops its run."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from k3sreg.config.storage import GCSettings, ScrubSettings
from k3sreg.oci.digest import Digest
from k3sreg.storage import gc, maintenance, scrub
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.store import Store


def _stores(root: Path, n: int) -> list[Store]:
    """`n` stores on one root: what `n` worker processes see (flock locks are per open file, so they exclude
    one another within a process too)."""
    return [Store(FilesystemDriver(root), threads=4) for _ in range(n)]


async def _run_for(seconds: float, *jobs: Any) -> None:
    tasks = [asyncio.create_task(job) for job in jobs]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_one_worker_at_a_time_once_per_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers collecting every 0.3 s never run at once, and runs start at least an interval apart."""
    runs: list[tuple[float, float]] = []
    original = gc.Collector.run

    def slow_run(self: gc.Collector) -> gc.Report:
        began = time.time()
        time.sleep(0.1)
        report = original(self)
        report.started = began
        runs.append((began, time.time()))
        return report

    monkeypatch.setattr(gc.Collector, "run", slow_run)
    settings = GCSettings(interval=0.3, delay=0)
    stores = _stores(tmp_path, 2)
    await _run_for(1.6, *(maintenance.collect_forever(s, settings) for s in stores))
    assert len(runs) >= 2
    for (start_a, end_a), (start_b, _) in itertools.pairwise(runs):
        assert end_a <= start_b and start_b - start_a >= 0.3


async def test_a_recent_run_is_not_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run recorded less than an interval ago (by any worker, before a restart) puts the next one off."""
    store = _stores(tmp_path, 1)[0]
    gc.save_report(store.driver, gc.Report(started=time.time()))
    ran = threading.Event()
    monkeypatch.setattr(gc.Collector, "run", lambda self: ran.set() or gc.Report())
    await _run_for(0.5, maintenance.collect_forever(store, GCSettings(interval=3600)))
    assert not ran.is_set()


async def test_listeners_hear_every_report_and_totals_add_up(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run reaches the listeners; TOTALS counts runs, bytes freed, objects removed and corrupt blobs."""
    heard: list[Any] = []
    monkeypatch.setattr(maintenance, "_listeners", [])
    monkeypatch.setattr(maintenance, "TOTALS", maintenance.Totals())
    maintenance.listen(heard.append)
    store = _stores(tmp_path, 1)[0]
    monkeypatch.setattr(gc.Collector, "run", lambda self: gc.Report(started=time.time(), bytes_freed=10,
                                                                     blobs_removed=2, manifests_removed=1))
    monkeypatch.setattr(scrub.Scrubber, "run", lambda self: scrub.Report(
        started=time.time(), finished=True, corrupt=[{"digest": "sha256:0", "reason": "x", "quarantined": False}]))
    await _run_for(0.5, maintenance.collect_forever(store, GCSettings(interval=3600)),
                   maintenance.scrub_forever(store, ScrubSettings(interval=3600)))
    assert sorted(type(r).__module__ for r in heard) == ["k3sreg.storage.gc", "k3sreg.storage.scrub"]
    totals = maintenance.TOTALS
    assert (totals.gc_runs, totals.gc_bytes_freed, totals.gc_blobs_removed, totals.gc_manifests_removed) == \
        (1, 10, 2, 1)
    assert (totals.scrub_runs, totals.scrub_corrupt_found) == (1, 1)
    assert scrub.last_report(store.driver) is not None and gc.last_report(store.driver) is not None


async def test_a_cancelled_job_stops_its_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling the background task (the server stopping) ends a scrub pass under way: the pass returns
    unfinished, and is not recorded, so the next start goes on with it."""
    store = _stores(tmp_path, 1)[0]
    for i in range(3):
        store.blobs.put_small(Digest.of(bytes([i]) * 4096), bytes([i]) * 4096)
    ended: list[scrub.Report] = []
    done = threading.Event()
    original = scrub.Scrubber.run

    def watched(self: scrub.Scrubber) -> scrub.Report:
        try:
            ended.append(original(self))
            return ended[-1]
        finally:
            done.set()

    monkeypatch.setattr(scrub.Scrubber, "run", watched)
    slow = ScrubSettings(interval=3600, rate=1024)  # four seconds a blob
    await _run_for(0.5, maintenance.scrub_forever(store, slow))
    assert await asyncio.to_thread(done.wait, 30)
    assert not ended[0].finished and scrub.last_report(store.driver) is None
