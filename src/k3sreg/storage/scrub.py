"""Scrub: read every blob again and check it against its digest, then check that each manifest has what it
needs and each tag names a manifest. Distribution has nothing like it.

    blobs      every blobs/<alg>/<xx>/<hex>/data, in digest order, at most `rate` bytes a second. Corrupt: its
               bytes are not its digest, or not the size its commit recorded (`size-<n>`), or cannot be read.
    quarantine (optional) a corrupt blob is moved to _quarantine/<alg>/<hex>/ (`data` as found, and `reason`)
               while holding it as a sweep does (`guard`). It is then absent from the store: a pull-through
               cache fetches it again on its next pull, and the manifests that need a pushed one show it missing.
    manifests  every revision of every repository: its bytes are there and are a manifest; each blob it needs
               is in the store and linked into the repository (not in `lazy` repositories, the pull-through
               cache's, which fetch blobs when they are asked for); each child manifest is in the repository.
    tags       each tag names a revision of its repository.
Blobs come first, so what this run quarantined shows up as missing in the manifests of the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import catalog, paths
from k3sreg.storage.driver import Driver, PathNotFound
from k3sreg.storage.gc import blob_digests, walk_order
from k3sreg.storage.links import read_link
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.mark import needs_of

_CHUNK = 1 << 20
_SAVE_EVERY = 10.0  # seconds between two records of where a background pass is


@dataclass
class Report:
    """What one scrub found. Stored as JSON (`_gc/scrub.json`) for every worker to read."""

    started: float = 0.0
    seconds: float = 0.0
    finished: bool = False          # False: stopped before the end (a later pass goes on from where it was)
    blobs_checked: int = 0
    bytes_read: int = 0
    manifests_checked: int = 0
    corrupt: list[dict[str, Any]] = field(default_factory=list)          # digest, reason, quarantined
    missing_blobs: list[dict[str, Any]] = field(default_factory=list)    # repository, manifest, blob, reason
    broken_manifests: list[dict[str, Any]] = field(default_factory=list)  # repository, manifest, reason
    dangling_tags: list[dict[str, Any]] = field(default_factory=list)    # repository, tag, digest

    @property
    def problem_count(self) -> int:
        return len(self.corrupt) + len(self.missing_blobs) + len(self.broken_manifests) + len(self.dangling_tags)

    def problems(self) -> list[str]:
        """One line per problem."""
        out = [f"blob {c['digest']}: {c['reason']}" + ("; quarantined" if c["quarantined"] else "")
               for c in self.corrupt]
        out += [f"{m['repository']}@{m['manifest']}: {m['reason']}" for m in self.broken_manifests]
        out += [f"{m['repository']}@{m['manifest']}: needs {m['blob']}, which {m['reason']}"
                for m in self.missing_blobs]
        out += [f"{t['repository']}:{t['tag']}: names {t['digest']}, which is not a manifest of "
                f"{t['repository']}" for t in self.dangling_tags]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": "scrub", **asdict(self), "problem_count": self.problem_count}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Report:
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})

    def line(self) -> str:
        """The one log line of a pass."""
        state = "" if self.finished else " (stopped before the end)"
        return (f"scrub: {self.blobs_checked} blobs ({self.bytes_read} bytes) and {self.manifests_checked} "
                f"manifests checked in {self.seconds:.1f}s{state}: {len(self.corrupt)} corrupt blobs, "
                f"{len(self.broken_manifests)} broken manifests, {len(self.missing_blobs)} missing blobs, "
                f"{len(self.dangling_tags)} tags naming nothing")


class Stopped(Exception):
    """The pass was asked to stop."""


class Scrubber:
    """One scrub pass over a store (synchronous: run it in a thread).

    `rate`: bytes read per second at most (0: as fast as it goes). `lazy(repo)`: repositories whose blobs
    may be absent by design (the pull-through cache's). `resume`: go on from where an interrupted pass
    recorded it was (the background pass). `stop` ends the pass early (`finished` stays False)."""

    def __init__(self, manifests: ManifestStore, *, rate: int = 0, quarantine: bool = False,
                 lazy: Callable[[str], bool] | None = None, stop: threading.Event | None = None,
                 resume: bool = False):
        self.manifests, self.blobs, self.driver = manifests, manifests.blobs, manifests.driver
        self.rate, self.quarantine, self.resume = rate, quarantine, resume
        self._lazy = lazy or (lambda _repo: False)
        self._stop = stop or threading.Event()

    def run(self) -> Report:
        report = Report(started=time.time())
        began = time.perf_counter()
        try:
            self._blobs(report)
            for repo in walk_order(catalog.repositories(self.driver)):
                self._check_stop()
                self._repository(repo, report)
            report.finished = True
        except Stopped:
            pass
        report.seconds = time.perf_counter() - began
        return report

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Stopped

    # --- blobs ------------------------------------------------------------------------------------------
    def _blobs(self, report: Report) -> None:
        after = self._resumed() if self.resume else None
        saved = time.monotonic()
        for d in sorted(blob_digests(self.driver), key=str):
            if after is not None and str(d) <= after:
                continue
            self._check_stop()
            reason = self._check_blob(d, report)
            if reason is not None:
                report.corrupt.append({"digest": str(d), "reason": reason,
                                       "quarantined": self.quarantine and self._quarantine(d, reason)})
            if self.resume and time.monotonic() - saved > _SAVE_EVERY:
                self.driver.put_content(paths.SCRUB_RESUME, str(d).encode(), sync=False)
                saved = time.monotonic()
        if self.resume:
            self.driver.delete(paths.SCRUB_RESUME)

    def _resumed(self) -> str | None:
        try:
            return self.driver.get_content(paths.SCRUB_RESUME).decode().strip() or None
        except (PathNotFound, UnicodeDecodeError):
            return None

    def _check_blob(self, d: Digest, report: Report) -> str | None:
        """Why blob `d` is corrupt, or None when it is whole (or gone meanwhile, or of an unknown algorithm)."""
        names = self.driver.list(paths.blob_dir(d))
        info = self.driver.stat(paths.blob_data(d))
        if info is None or info.is_dir or d.algorithm not in hashlib.algorithms_available:
            return None
        recorded = [int(n[len(paths.SIZE_MARKER):]) for n in names
                    if n.startswith(paths.SIZE_MARKER) and n[len(paths.SIZE_MARKER):].isdigit()]
        report.blobs_checked += 1
        if recorded and info.size not in recorded:
            return f"{info.size} bytes, not the {recorded[0]} its commit recorded"
        hasher = hashlib.new(d.algorithm)
        try:
            with self.driver.reader(paths.blob_data(d)) as f:
                while chunk := f.read(_CHUNK):
                    hasher.update(chunk)
                    report.bytes_read += len(chunk)
                    self._pace(report)
        except PathNotFound:
            return None  # removed by a garbage collection meanwhile
        except OSError as e:
            return f"cannot be read: {e.strerror or e}"
        actual = hasher.hexdigest()
        if actual != d.hex:
            return f"its bytes are {d.algorithm}:{actual}"
        return None

    def _pace(self, report: Report) -> None:
        self._check_stop()
        if self.rate <= 0:
            return
        ahead = report.bytes_read / self.rate - (time.time() - report.started)
        if ahead > 0 and self._stop.wait(ahead):
            raise Stopped

    def _quarantine(self, d: Digest, reason: str) -> bool:
        """Move corrupt blob `d` aside (see the module docstring); False when a write holds it right now."""
        with self.blobs.guard.sweeping(d) as held:
            if not held:
                return False
            aside = paths.quarantine_dir(d)
            when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.driver.put_content(paths.child(aside, "reason"), f"{when} {d}: {reason}\n".encode())
            with contextlib.suppress(PathNotFound):
                self.driver.move(paths.blob_data(d), paths.child(aside, paths.DATA))
            self.driver.delete(paths.blob_dir(d))
            return True

    # --- manifests and tags ------------------------------------------------------------------------------
    def _repository(self, repo: str, report: Report) -> None:
        lazy = self._lazy(repo)
        revisions = set(self.manifests.linked(repo))
        for d in sorted(revisions, key=str):
            report.manifests_checked += 1
            try:
                needs = needs_of(self.blobs.get_small(d))
            except errors.BlobUnknown:
                report.broken_manifests.append({"repository": repo, "manifest": str(d),
                                                "reason": "its bytes are missing"})
                continue
            if not needs.readable:
                report.broken_manifests.append({"repository": repo, "manifest": str(d),
                                                "reason": "its bytes are not a manifest"})
                continue
            for blob in () if lazy else needs.stored:
                why = self._missing(repo, blob)
                if why:
                    report.missing_blobs.append({"repository": repo, "manifest": str(d), "blob": str(blob),
                                                 "reason": why})
            for child in needs.children:
                if child not in revisions or self.blobs.stat_global(child) is None:
                    report.missing_blobs.append({"repository": repo, "manifest": str(d), "blob": str(child),
                                                 "reason": f"is not a manifest of {repo}"})
        for tag in sorted(self.driver.list(paths.tags(repo))):
            d_tag = read_link(self.driver, paths.tag_current_link(repo, tag))
            if d_tag is not None and d_tag not in revisions:
                report.dangling_tags.append({"repository": repo, "tag": tag, "digest": str(d_tag)})

    def _missing(self, repo: str, blob: Digest) -> str | None:
        if self.blobs.stat_global(blob) is None:
            return "is not in the store"
        if read_link(self.driver, paths.layer_link(repo, blob)) != blob:
            return f"is not linked into {repo}"
        return None


def save_report(driver: Driver, report: Report) -> None:
    """Keep `report` as the last pass's, for every worker to show."""
    driver.put_content(paths.SCRUB_REPORT, json.dumps(report.to_json(), sort_keys=True).encode(), sync=False)


def last_report(driver: Driver) -> Report | None:
    """The last finished pass's report, None when there was none (or it cannot be read)."""
    try:
        return Report.from_json(json.loads(driver.get_content(paths.SCRUB_REPORT)))
    except (KeyError, ValueError, TypeError):
        return None
