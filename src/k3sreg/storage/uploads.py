"""Resumable upload sessions: `_uploads/<uuid>/` of a repository, written through a BlobWriter per request.

Requests on one upload session run one at a time, across worker processes too: each takes the session's
lock (`_uploads/<uuid>/lock`, from the LockService) or fails at once with UploadBusy, which the async layer
turns into a bounded wait. An append holds it for the whole request body, so a commit runs only when no
writer of the session is open: the file it moves into the blob store is never written again. The commit ends
the session before it lets go, so whoever waited finds it gone (BLOB_UPLOAD_UNKNOWN).
"""

from __future__ import annotations

import contextlib
import threading
import uuid as uuidlib
from datetime import UTC, datetime

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobInfo, BlobStore
from k3sreg.storage.blobwriter import BlobWriter, HashState, hash_file
from k3sreg.storage.driver import Lock, LockService, PathNotFound, own_locks


class Appender:
    """One request's hold on an upload session: its BlobWriter appends the request body, and the session's
    lock is held from `UploadSessions.begin_append` until `finish` or `abort`; used from worker threads."""

    def __init__(self, sessions: UploadSessions, repo: str, uuid: str, writer: BlobWriter, lock: Lock):
        self._sessions, self._repo, self._uuid = sessions, repo, uuid
        self.writer = writer
        self._lock: Lock | None = lock

    @property
    def size(self) -> int:
        return self.writer.size

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def finish(self) -> int:
        """Close the file, keep the hash for the next request of this session, let the session go; returns the
        size. A failure to close (a full disk) undoes the request, as `abort` does."""
        try:
            self.writer.close()
        except BaseException:
            self.abort()
            raise
        self._sessions.keep_state(self._repo, self._uuid, self.writer.state)
        self._unlock()
        return self.writer.size

    def abort(self) -> None:
        """Undo the request: the file is cut back to its size before it, the hash dropped (it is recomputed
        from the file if needed), and the session let go. Does nothing the second time."""
        if self._lock is None:
            return
        try:
            with contextlib.suppress(OSError):
                self.writer.cancel()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class UploadSessions:
    """Upload sessions on top of a BlobStore (synchronous; run in threads). `locks` defaults to the driver's."""

    def __init__(self, blobs: BlobStore, locks: LockService | None = None):
        self.blobs = blobs
        self.driver = blobs.driver
        self.locks = locks or own_locks(self.driver)
        self._states: dict[tuple[str, str], HashState] = {}  # kept per process: another worker's chunk forces
        self._states_lock = threading.Lock()                 # a rehash from the file

    def create(self, repo: str, uuid: str | None = None) -> str:
        """Open an upload session; the caller may choose its id to be able to clean up after a cancel."""
        uuid = uuid or new_upload_id()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            self.driver.put_content(paths.upload_startedat(repo, uuid), now.encode())
            self.driver.writer(paths.upload_data(repo, uuid), append=False).close()
        except BaseException:
            with contextlib.suppress(OSError, errors.RegistryError):
                self.driver.delete(paths.upload_dir(repo, uuid))
            raise
        return uuid

    def _open(self, repo: str, uuid: str) -> tuple[Lock, int]:
        """Take the session's lock and return it with the upload's size; UploadBusy while another request has
        the session, BlobUploadUnknown when there is no such session (or it ended while we asked)."""
        try:
            lock = self.locks.try_lock(paths.upload_lock(repo, uuid))
        except (PathNotFound, errors.StoragePathInvalid):
            # An id that is no storage name ('..', NUL) names no session: the answer the spec has for that.
            raise errors.BlobUploadUnknown(detail={"uuid": uuid[:100]}) from None
        if lock is None:
            raise errors.UploadBusy(detail={"uuid": uuid})
        try:
            info = self.driver.stat(paths.upload_data(repo, uuid))
            if info is None or info.is_dir:
                raise errors.BlobUploadUnknown(detail={"uuid": uuid})
        except BaseException:
            lock.release()
            raise
        return lock, info.size

    def _writer(self, repo: str, uuid: str, state: HashState) -> BlobWriter:
        data = paths.upload_data(repo, uuid)
        try:
            file = self.driver.writer(data, append=True)
        except PathNotFound:
            raise errors.BlobUploadUnknown(detail={"uuid": uuid}) from None
        return BlobWriter(self.blobs, data, file, state)

    def size(self, repo: str, uuid: str) -> int:
        lock, size = self._open(repo, uuid)
        lock.release()
        return size

    def cancel(self, repo: str, uuid: str) -> None:
        lock, _ = self._open(repo, uuid)
        try:
            self._drop(repo, uuid)
            self.driver.delete(paths.upload_dir(repo, uuid))
        finally:
            lock.release()

    def begin_append(self, repo: str, uuid: str, start: int | None) -> Appender:
        """Open the upload for appending, holding its session until the Appender finishes or aborts; `start`
        (from Content-Range) must equal the current size."""
        lock, size = self._open(repo, uuid)
        try:
            if start is not None and start != size:
                raise errors.RangeInvalid(
                    f"chunk starts at {start} but the upload has {size} bytes",
                    headers={"Range": upload_range(size)},
                )
            writer = self._writer(repo, uuid, self._take(repo, uuid, size))
        except BaseException:
            lock.release()
            raise
        return Appender(self, repo, uuid, writer, lock)

    def commit(self, repo: str, uuid: str, d: Digest) -> BlobInfo:
        """Verify the upload against `d`, move it into the blob store and link it; the session ends either way."""
        lock, size = self._open(repo, uuid)
        try:
            # Every writer of this session holds the lock we hold, so none is open: the file moved into the
            # blob store is closed for good.
            writer = self._writer(repo, uuid, self._take(repo, uuid, size, rehash=False))
            try:
                info = writer.commit(d, repo)
            except BaseException as e:
                writer.cancel()  # it appended nothing; closed without publishing anything
                if isinstance(e, errors.DigestInvalid):
                    self.driver.delete(paths.upload_dir(repo, uuid))
                raise
            self.driver.delete(paths.upload_dir(repo, uuid))
        finally:
            lock.release()
        return info

    # --- hash states ------------------------------------------------------------------------------------
    def _take(self, repo: str, uuid: str, size: int, rehash: bool = True) -> HashState:
        """This process's running hash of the session, when it covers the file's `size` bytes; else the file
        hashed again (or, without `rehash`, an empty state that the writer will find stale)."""
        with self._states_lock:
            state = self._states.pop((repo, uuid), None)
        if state is not None and state.offset == size:
            return state
        return hash_file(self.driver, paths.upload_data(repo, uuid)) if rehash else HashState()

    def keep_state(self, repo: str, uuid: str, state: HashState) -> None:
        with self._states_lock:
            self._states[(repo, uuid)] = state

    def _drop(self, repo: str, uuid: str) -> None:
        with self._states_lock:
            self._states.pop((repo, uuid), None)


def new_upload_id() -> str:
    return str(uuidlib.uuid4())


def upload_range(size: int) -> str:
    """The `Range` header of an upload holding `size` bytes (Distribution says 0-0 when empty)."""
    return f"0-{max(size - 1, 0)}"
