"""Garbage collection while the registry serves, with no read-only mode: the one protocol between the writes
that rely on blobs being in the store and the sweeps that remove blobs.

    a write that relies on blobs (a manifest PUT: the manifest itself, its config, layers and children; an
    upload or fill commit of content the store has already; a mount)
        hold(digests)   take the lock of each blob (one of 4096 stripes, _gc/locks/<hex[:3]>, from the
                        LockService), all or none; learn which are present, and stamp each present one
                        (blobs/.../<hex>/used: its mtime)
        write           the links that rely on them, only if those it needs are present; else nothing
        let go          stamp them again, release the locks
    a sweep (garbage collection, eviction), started at T0 on the storage's own clock (`clock`: what is
    written afterwards is strictly newer), cutoff = T0 - delay
        mark            read every manifest: what they need is never swept in this run
        sweep(d)        take d's lock (busy: leave d to the next run); remove d only if no file in its
                        directory (the bytes, the size record, the stamp) is newer than the cutoff; a write
                        waiting for the lock then finds d gone

The invariant: a blob that a stored manifest needs is never removed.
  - A manifest the mark read needs only marked blobs, which the sweep never looks at.
  - A manifest the mark did not read was written after the mark listed its repository (so after T0), by a
    write that held the lock of every blob it needs and found each present. The sweep takes the same lock,
    so it comes either first (the write then finds the blob gone, writes nothing, and answers
    MANIFEST_BLOB_UNKNOWN) or after the write let go (and finds its second stamp, newer than T0: the blob
    stays).
  - A write killed between its manifest and its second stamp left the first one, written just before the
    manifest: the blob stays unless that single write took longer than `delay`.
And `delay` itself: a blob uploaded, mounted or relied on by a write less than `delay` before the run has a
file that new (a commit writes the size record, the other writes stamp), so it stays even while no manifest
needs it yet: the manifest that will need it can still be pushed.

Holding is all or nothing: a write that finds a lock busy lets go of those it took and tries again a moment
later, so writes never wait for one another whatever order they name their digests in (no deadlock). Locks
are striped by digest rather than one per blob: a lock file in each blob's directory would cost a file
created and removed per blob swept (measured: 40% of a sweep), and two blobs sharing a stripe only means that
a write and the sweep of the other wait a moment for each other.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.driver import Driver, Lock, LockService, PathNotFound

_PAUSE = 0.001, 0.05  # first and longest pause before a write tries its locks again
_PATIENCE = 60.0      # a write gives up (UNAVAILABLE) after waiting this long for locks held by others
_TICK_WAIT = 2.5      # the coarsest file system clock to wait for (FAT: 2 s)


class Busy(Exception):
    """A lock another write or a sweep holds: let go of everything and try again."""


class Hold:
    """The locks a write holds on blobs, and which of those blobs are present (stamped)."""

    def __init__(self, guard: BlobGuard):
        self._guard = guard
        self._locks: dict[str, Lock] = {}
        self.present: set[Digest] = set()

    def take(self, d: Digest) -> None:
        """Hold `d` too; Busy when someone else holds its lock. A blob not in the store is held (a sweep
        cannot remove its next copy meanwhile) but not present."""
        guard = self._guard
        stripe = paths.gc_stripe(d)
        if guard.locks is not None and stripe not in self._locks:
            lock = guard.lock(stripe)
            if lock is None:
                raise Busy(str(d))
            self._locks[stripe] = lock
        if guard.present(d):
            guard.stamp(d)
            self.present.add(d)

    def try_take(self, d: Digest) -> bool:
        """Hold `d` too if nobody else does (a blob the write has just stored); False when busy."""
        try:
            self.take(d)
        except Busy:
            return False
        return d in self.present

    def release(self, stamp: bool = True) -> None:
        try:
            if stamp:
                for d in self.present:
                    self._guard.stamp(d)
        finally:
            for lock in self._locks.values():
                lock.release()
            self._locks.clear()


class BlobGuard:
    """The write side (`hold`) and the sweep side (`sweep`, `clock`) of the protocol above, on one store.

    `locks` is the store's LockService (None: a store nobody else writes, as in tests); `present(d)` says
    whether blob `d` is in the store, whole."""

    def __init__(self, driver: Driver, locks: LockService | None, present: Callable[[Digest], bool]):
        self.driver, self.locks, self.present = driver, locks, present

    def stamp(self, d: Digest) -> None:
        self.driver.put_content(paths.blob_used(d), b"", sync=False)

    def lock(self, stripe: str) -> Lock | None:
        """Take the lock `stripe` (see `paths.gc_stripe`), None while someone holds it."""
        assert self.locks is not None
        try:
            return self.locks.try_lock(stripe)
        except PathNotFound:  # the first lock of this storage: its directory is made once
            self.driver.put_content(paths.GC_LOCKS_READY, b"", sync=False)
            return self.locks.try_lock(stripe)

    @contextlib.contextmanager
    def hold(self, digests: Iterable[Digest], patience: float = _PATIENCE) -> Iterator[Hold]:
        """Hold every blob of `digests` for the block (see the module docstring); yields the Hold, whose
        `present` names the blobs in the store. UNAVAILABLE after `patience` seconds of busy locks."""
        wanted = sorted(set(digests), key=str)
        deadline = time.monotonic() + patience
        pause, longest = _PAUSE
        while True:
            held = Hold(self)
            try:
                for d in wanted:
                    held.take(d)
            except Busy:
                held.release(stamp=False)
                if time.monotonic() + pause > deadline:
                    raise errors.Unavailable("the storage is busy with these blobs; try again") from None
                time.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, longest)
                continue
            except BaseException:
                held.release(stamp=False)
                raise
            try:
                yield held
            finally:
                held.release()
            return

    def clock(self) -> float:
        """T0 of a sweep: now on the storage's own clock (the mtime of a file written now), returned once that
        clock has moved past it, so that whatever is written after this returns is strictly newer.

        File systems stamp files from a clock that ticks every few milliseconds: files written before and
        after a moment within one tick carry the same mtime, and only the wait tells them apart."""
        first = self._probe()
        deadline = time.monotonic() + _TICK_WAIT
        while self._probe() <= first and time.monotonic() < deadline:
            time.sleep(0.001)
        return first

    def _probe(self) -> float:
        self.driver.put_content(paths.GC_CLOCK, b"", sync=False)
        info = self.driver.stat(paths.GC_CLOCK)
        return info.mtime if info is not None else time.time()

    def newest(self, d: Digest) -> float | None:
        """The mtime of the newest file in `d`'s directory; None when there is none."""
        base = paths.blob_dir(d)
        times = [info.mtime for name in self.driver.list(base)
                 if (info := self.driver.stat(paths.child(base, name))) is not None]
        return max(times, default=None)

    def sweep(self, d: Digest, cutoff: float, dry_run: bool = False) -> int | None:
        """Remove blob `d` unless it was relied on after `cutoff` or a write holds it; the bytes freed, or None
        when it stays (or was gone already). With `dry_run`, only say what would be freed."""
        lock: Lock | None = None
        if self.locks is not None and not dry_run:
            lock = self.lock(paths.gc_stripe(d))
            if lock is None:
                return None
        try:
            newest = self.newest(d)
            if newest is None or newest > cutoff:
                return None
            info = self.driver.stat(paths.blob_data(d))
            size = info.size if info is not None and not info.is_dir else 0
            if not dry_run:
                self.driver.delete(paths.blob_dir(d))
            return size
        finally:
            if lock is not None:
                lock.release()

    @contextlib.contextmanager
    def sweeping(self, d: Digest) -> Iterator[bool]:
        """Hold `d` as a sweep does, to remove or move something that relies on it (a manifest's revision, a
        corrupt blob): yields False when a write holds it (leave it then)."""
        lock: Lock | None = None
        if self.locks is not None:
            lock = self.lock(paths.gc_stripe(d))
            if lock is None:
                yield False
                return
        try:
            yield True
        finally:
            if lock is not None:
                lock.release()
