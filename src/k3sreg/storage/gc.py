"""Garbage collection: Distribution's mark and sweep (`registry garbage-collect`), run while the registry serves
(the protocol with concurrent writes is `guard`'s), with or without deleting untagged manifests.

    T0     the storage's clock (`guard.clock`); cutoff = T0 - delay
    survey each repository (in Distribution's walk order), each manifest revision: what it needs (its bytes are
           read once), whether a tag points at it, whether its revision was written after the cutoff
    keep   every manifest; with delete_untagged, per repository, what its tags reach: tagged manifests, the
           children of kept indexes, the referrers of kept manifests, and everything pushed after the cutoff
           (it may be tagged next) with what that reaches. What kept manifests need is marked.
    drop   (delete_untagged) the other manifests, parents before children and subjects before referrers, each
           while holding it as a sweep does and only if nothing relied on it after the cutoff. One that stays
           (a write holds it, or it was just pushed again) keeps everything below it.
    sweep  every blob nothing marked: `guard.sweep`, which leaves what a write relied on after the cutoff.

On purpose, unlike Distribution 2.8.2: with delete_untagged the children of a tagged index stay, with their
layers (2.8.2 deletes them and breaks the image: distribution/distribution#3178, fixed in 3.0), and so do the
referrers (signatures, SBOMs) of kept manifests. A manifest whose bytes are missing or unreadable stops 2.8.2's
run; here it is reported, never dropped, and every blob its repository links is kept (what it needs is unknown).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from k3sreg import errors
from k3sreg.oci.digest import Digest, InvalidDigest
from k3sreg.storage import catalog, paths
from k3sreg.storage.driver import Driver
from k3sreg.storage.links import digests_under, read_link
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.mark import Needed, Needs, needs_of

log = logging.getLogger("k3sreg.storage")
Emit = Callable[[str], None]


@dataclass
class Report:
    """What one garbage collection run did (or, with `dry_run`, would do): the figures the log line, the CLI,
    metrics and the web page show. Stored as JSON (`_gc/gc.json`) for every worker to read."""

    started: float = 0.0            # wall clock, seconds since the epoch
    seconds: float = 0.0
    dry_run: bool = False
    delete_untagged: bool = False
    delay: float = 0.0
    repositories: int = 0
    marked: int = 0                 # digests that kept manifests need (Distribution's "blobs marked")
    manifests_removed: int = 0      # with dry_run: eligible
    blobs_removed: int = 0          # with dry_run: eligible
    bytes_freed: int = 0            # with dry_run: what would be freed
    blobs_kept_recent: int = 0      # needed by nothing, but relied on within `delay` (or held right then)
    problems: list[str] = field(default_factory=list)

    @property
    def objects_removed(self) -> int:
        return self.manifests_removed + self.blobs_removed

    def to_json(self) -> dict[str, Any]:
        return {"kind": "gc", **asdict(self), "objects_removed": self.objects_removed}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Report:
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})

    def line(self) -> str:
        """The one log line of a run."""
        verb = "would remove" if self.dry_run else "removed"
        text = (f"garbage collection: {verb} {self.manifests_removed} manifests and {self.blobs_removed} blobs "
                f"({self.bytes_freed} bytes) in {self.seconds:.2f}s; {self.marked} blobs marked in "
                f"{self.repositories} repositories")
        if self.blobs_kept_recent:
            text += f"; {self.blobs_kept_recent} unneeded blobs kept (used within {self.delay:g}s)"
        if self.problems:
            text += f"; {len(self.problems)} problems: {self.problems[0]}"
        return text


class Stopped(Exception):
    """The run was asked to stop."""


@dataclass(frozen=True, slots=True)
class _Entry:
    repo: str
    digest: Digest
    needs: Needs
    tagged: bool
    recent: bool


def walk_order(repos: list[str]) -> list[str]:
    """Repositories in the order Distribution's walk visits them (path component by component)."""
    return sorted(repos, key=lambda name: name.split("/"))


class Collector:
    """One garbage collection run over a store (synchronous: run it in one of the store's threads).

    `emit` receives Distribution's output lines (`registry garbage-collect`); `untagged_in(repo)` says in
    which repositories delete_untagged applies (the server leaves the cache's to eviction); `stop` ends the
    run early (Stopped), at a point where what it did so far is consistent."""

    def __init__(self, manifests: ManifestStore, *, delay: float = 0.0, delete_untagged: bool = False,
                 dry_run: bool = False, emit: Emit | None = None,
                 untagged_in: Callable[[str], bool] | None = None, stop: threading.Event | None = None):
        self.manifests, self.blobs, self.driver = manifests, manifests.blobs, manifests.driver
        self._stop = stop or threading.Event()
        self.guard = self.blobs.guard
        self.delay, self.delete_untagged, self.dry_run = delay, delete_untagged, dry_run
        self._emit = emit
        self._untagged_in = untagged_in or (lambda _repo: True)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Stopped

    def emit(self, line: str) -> None:
        if self._emit is not None:
            self._emit(line)

    def run(self) -> Report:
        report = Report(started=time.time(), dry_run=self.dry_run, delete_untagged=self.delete_untagged,
                        delay=self.delay)
        began = time.perf_counter()
        cutoff = self.guard.clock() - self.delay
        mark, doomed = Needed(), []
        repos = walk_order(catalog.repositories(self.driver))
        for repo in repos:
            self._check_stop()
            doomed += self._mark_repository(repo, cutoff, mark, report)
        report.repositories, report.manifests_removed = len(repos), len(doomed)
        if not self.dry_run:
            report.manifests_removed = self._drop(doomed, cutoff, mark)
        report.marked = len(mark)
        eligible = self._sweep(cutoff, mark, report)
        self.emit("")
        self.emit(f"{report.marked} blobs marked, {len(eligible)} blobs and {len(doomed)} manifests eligible "
                  "for deletion")
        for d in eligible:
            self.emit(f"blob eligible for deletion: {d}")
        report.seconds = time.perf_counter() - began
        return report

    # --- mark -------------------------------------------------------------------------------------------
    def _survey(self, repo: str, cutoff: float, untagged: bool) -> list[_Entry]:
        tagged: set[Digest] = set()
        for tag in self.driver.list(paths.tags(repo)) if untagged else ():
            d = read_link(self.driver, paths.tag_current_link(repo, tag))
            if d is not None:
                tagged.add(d)
        entries = []
        for d in sorted(self.manifests.linked(repo), key=lambda d: (d.algorithm, d.hex)):
            recent = False
            if untagged and d not in tagged:
                info = self.driver.stat(paths.revision_link(repo, d))
                recent = info is None or info.mtime > cutoff
            entries.append(_Entry(repo, d, self._needs(d), d in tagged, recent))
        return entries

    def _needs(self, d: Digest) -> Needs:
        # Read past the manifest cache: a run reads every manifest once, and would evict the hot ones.
        try:
            return needs_of(self.blobs.get_small(d))
        except errors.BlobUnknown:
            return Needs()

    def _mark_repository(self, repo: str, cutoff: float, mark: Needed, report: Report) -> list[_Entry]:
        """Mark what `repo` keeps; returns the manifests to drop."""
        untagged = self.delete_untagged and self._untagged_in(repo)
        entries = self._survey(repo, cutoff, untagged)
        kept = _reach(entries) if untagged else {e.digest for e in entries}
        linked: tuple[Digest, ...] | None = None
        doomed = []
        self.emit(repo)
        for e in entries:
            if e.digest not in kept:
                self.emit(f"manifest eligible for deletion: {e.digest}")
                doomed.append(e)
                continue
            self.emit(f"{repo}: marking manifest {e.digest} ")
            refs = e.needs.refs
            for ref in refs:
                self.emit(f"{repo}: marking blob {ref}")
            if not e.needs.readable:
                if linked is None:
                    linked = tuple(digests_under(self.driver, paths.layers(repo)))
                refs = linked
                report.problems.append(f"{repo}@{e.digest}: its bytes are missing or not a manifest; every blob "
                                       f"{repo} links is kept")
            mark.keep(repo, e.digest, (e.digest, *refs))
        return doomed

    # --- drop and sweep ---------------------------------------------------------------------------------
    def _drop(self, doomed: list[_Entry], cutoff: float, mark: Needed) -> int:
        """Drop the doomed manifests, parents first; those that stay, and all below them, are marked."""
        staying: set[tuple[str, Digest]] = set()
        dropped = 0
        for e, parents in _parents_first(doomed):
            self._check_stop()
            if any((e.repo, p) in staying for p in parents) or not self._drop_one(e, cutoff):
                staying.add((e.repo, e.digest))
                mark.keep(e.repo, e.digest, (e.digest, *e.needs.refs))
            else:
                dropped += 1
        return dropped

    def _drop_one(self, e: _Entry, cutoff: float) -> bool:
        """Remove one manifest revision (its tag history and referrers link too) unless something relied on it
        after the cutoff; False when it stays."""
        with self.guard.sweeping(e.digest) as held:
            if not held or not self.guard.present(e.digest):
                return False
            info = self.driver.stat(paths.revision_link(e.repo, e.digest))
            if (info is not None and info.mtime > cutoff) or (self.guard.newest(e.digest) or 0.0) > cutoff:
                return False
            for tag in self.driver.list(paths.tags(e.repo)):
                self.driver.delete(paths.tag_index_dir(e.repo, tag, e.digest))
            if e.needs.subject is not None:
                self.driver.delete(paths.referrer_dir(e.repo, e.needs.subject, e.digest))
            self.driver.delete(paths.revision_dir(e.repo, e.digest))
            log.info("garbage collection: deleted manifest %s@%s", e.repo, e.digest)
            return True

    def _sweep(self, cutoff: float, mark: Needed, report: Report) -> list[Digest]:
        """Sweep (or, dry, look at) every blob nothing marked; returns those removed (or eligible)."""
        removed = []
        for d in blob_digests(self.driver):
            if mark.kept(d):
                continue
            self._check_stop()
            if self.driver.stat(paths.blob_data(d)) is None:
                self.guard.sweep(d, cutoff, self.dry_run)  # what a crash left of a commit: no blob
                continue
            freed = self.guard.sweep(d, cutoff, self.dry_run)
            if freed is None:
                report.blobs_kept_recent += self.driver.stat(paths.blob_dir(d)) is not None
                continue
            removed.append(d)
            report.blobs_removed += 1
            report.bytes_freed += freed
        return sorted(removed, key=str)


def blob_digests(driver: Driver) -> Iterator[Digest]:
    """The digest of every directory of the blob store (`blobs/<alg>/<xx>/<hex>`), from listings only."""
    for alg in driver.list(paths.BLOBS):
        base = paths.child(paths.BLOBS, alg)
        for prefix in driver.list(base):
            for hexd in driver.list(paths.child(base, prefix)):
                try:
                    yield Digest.parse(f"{alg}:{hexd}")
                except InvalidDigest:
                    continue


def _reach(entries: list[_Entry]) -> set[Digest]:
    """The manifests of one repository that its tags reach (children, referrers), or that were just pushed, or
    that cannot be read (they are never dropped)."""
    by_digest = {e.digest: e for e in entries}
    referrers: dict[Digest, list[Digest]] = {}
    for e in entries:
        if e.needs.subject is not None:
            referrers.setdefault(e.needs.subject, []).append(e.digest)
    stack = [e.digest for e in entries if e.tagged or e.recent or not e.needs.readable]
    kept: set[Digest] = set()
    while stack:
        d = stack.pop()
        if d in kept:
            continue
        kept.add(d)
        entry = by_digest.get(d)
        if entry is not None:
            stack += [c for c in entry.needs.children if c in by_digest]
        stack += referrers.get(d, [])
    return kept


def _parents_first(doomed: list[_Entry]) -> Iterator[tuple[_Entry, list[Digest]]]:
    """Each doomed manifest with its doomed parents (indexes that list it, the subject it refers to), every
    parent before its children."""
    parents: dict[tuple[str, Digest], list[Digest]] = {(e.repo, e.digest): [] for e in doomed}
    for e in doomed:
        for child in e.needs.children:
            if (e.repo, child) in parents:
                parents[e.repo, child].append(e.digest)
        if e.needs.subject is not None and (e.repo, e.needs.subject) in parents:
            parents[e.repo, e.digest].append(e.needs.subject)
    done: set[tuple[str, Digest]] = set()
    pending = list(doomed)
    while pending:
        later = []
        for e in pending:
            key = (e.repo, e.digest)
            if all((e.repo, p) in done for p in parents[key]):
                done.add(key)
                yield e, parents[key]
            else:
                later.append(e)
        if len(later) == len(pending):  # a cycle, which digests make impossible: take them as they come
            for e in later:
                yield e, parents[e.repo, e.digest]
            return
        pending = later


def save_report(driver: Driver, report: Report) -> None:
    """Keep `report` as the last run's, for every worker to show."""
    driver.put_content(paths.GC_REPORT, json.dumps(report.to_json(), sort_keys=True).encode(), sync=False)


def last_report(driver: Driver) -> Report | None:
    """The last run's report, None when there was none (or it cannot be read)."""
    try:
        return Report.from_json(json.loads(driver.get_content(paths.GC_REPORT)))
    except (KeyError, ValueError, TypeError):
        return None
