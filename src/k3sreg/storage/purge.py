"""Upload purging (Distribution's `storage.maintenance.uploadpurging`): drop abandoned upload sessions."""

from __future__ import annotations

import time
from datetime import datetime

from k3sreg.storage import catalog, paths
from k3sreg.storage.driver import Driver, LockService, PathNotFound, own_locks


def _started(driver: Driver, repo: str, uuid: str) -> float | None:
    try:
        raw = driver.get_content(paths.upload_startedat(repo, uuid)).decode().strip()
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except (PathNotFound, ValueError):
        info = driver.stat(paths.upload_dir(repo, uuid))
        return info.mtime if info else None


def _remove_session(driver: Driver, locks: LockService, repo: str, uuid: str, dry_run: bool) -> bool:
    """Remove an upload session unless a request is working on it (then it is not abandoned)."""
    try:
        lock = locks.try_lock(paths.upload_lock(repo, uuid))
    except PathNotFound:
        return False
    if lock is None:
        return False
    try:
        if not dry_run:
            driver.delete(paths.upload_dir(repo, uuid))
    finally:
        lock.release()
    return True


def purge_uploads(driver: Driver, age: float, dry_run: bool = False, now: float | None = None,
                  locks: LockService | None = None) -> list[str]:
    """Remove upload sessions started more than `age` seconds ago, and stale staging files; returns them.
    `locks` (the sessions' lock service) defaults to the driver."""
    now = time.time() if now is None else now
    locks = locks or own_locks(driver)
    removed: list[str] = []
    for repo in catalog.repositories(driver, catalog.ALL_MARKERS):
        for uuid in driver.list(paths.uploads(repo)):
            started = _started(driver, repo, uuid)
            if started is not None and now - started > age and _remove_session(driver, locks, repo, uuid, dry_run):
                removed.append(f"{repo}/{uuid}")
    for name in driver.list(paths.TMP):
        staged = paths.tmp(name)
        info = driver.stat(staged)
        if info is not None and now - info.mtime > min(age, 3600):
            removed.append(staged)
            if not dry_run:
                driver.delete(staged)
    return removed
