"""Blobs and uploads: the global content-addressed store, per-repository links, resumable upload sessions.

A blob becomes visible in a repository in this order: its bytes are fsynced and renamed into
`blobs/<alg>/<xx>/<hex>/data` only after the digest was verified, then the repository's `_layers` link is
written. A process killed at any point leaves at most an upload directory (purged later) or an unlinked blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime

from k3sreg import errors
from k3sreg.oci.digest import Digest, InvalidDigest
from k3sreg.storage import paths
from k3sreg.storage.driver import Driver, Lock, PathNotFound, Writer

log = logging.getLogger("k3sreg.storage")
_REHASH_CHUNK = 4 << 20
_UNRECORDED_MEMO = 65536


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What HEAD and GET need: the digest, the exact size, and a local file when the driver has one."""

    digest: Digest
    size: int
    path: str


def read_link(driver: Driver, path: str) -> Digest | None:
    """The digest a link file names, or None when there is no (valid) link."""
    try:
        raw = driver.get_content(path)
    except PathNotFound:
        return None
    try:
        return Digest.parse(raw.decode("ascii", "replace").strip())
    except InvalidDigest:
        return None


def write_link(driver: Driver, path: str, d: Digest) -> None:
    driver.put_content(path, str(d).encode())


class _HashState:
    """The running sha256 of an upload, valid while `offset` equals the data file's size."""

    __slots__ = ("hasher", "offset")

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.offset = 0


class Appender:
    """Appends request bytes to one upload and keeps its running hash, holding the session's lock from
    `BlobStore.begin_append` until `finish` or `abort`; used from worker threads."""

    def __init__(self, store: BlobStore, repo: str, uuid: str, state: _HashState, writer: Writer, lock: Lock):
        self._store, self._repo, self._uuid = store, repo, uuid
        self._state, self._writer = state, writer
        self._begin = writer.size
        self._lock: Lock | None = lock

    @property
    def size(self) -> int:
        return self._writer.size

    def write(self, data: bytes) -> None:
        self.write_parts([data])
        self.hash_parts([data])

    def write_parts(self, parts: list[bytes]) -> None:
        """Append to the file; may run in one thread while `hash_parts` of the same bytes runs in another.

        The request body arrives in pieces; writing them one by one spares a copy into one big buffer."""
        for part in parts:
            self._writer.write(part)

    def hash_parts(self, parts: list[bytes]) -> None:
        for part in parts:
            self._state.hasher.update(part)
            self._state.offset += len(part)

    def finish(self) -> int:
        """Close the file, keep the hash for the next request of this session, let the session go; returns the
        size. A failure to close (a full disk) undoes the request, as `abort` does."""
        try:
            self._writer.close()
        except BaseException:
            self.abort()
            raise
        self._store.keep_state(self._repo, self._uuid, self._state)
        self._unlock()
        return self._writer.size

    def abort(self) -> None:
        """Undo the request: the file is cut back to its size before it, the hash dropped (it is recomputed
        from the file if needed), and the session let go. Does nothing the second time."""
        if self._lock is None:
            return
        try:
            with contextlib.suppress(OSError):
                self._writer.close()
            with contextlib.suppress(OSError, PathNotFound):
                self._store.driver.truncate(paths.upload_data(self._repo, self._uuid), self._begin)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class BlobStore:
    """Blobs, repository links and upload sessions on top of a Driver (synchronous; run in threads).

    Requests on one upload session run one at a time, across worker processes too: each takes the session's
    lock (`_uploads/<uuid>/lock`) or fails at once with UploadBusy, which the async layer turns into a bounded
    wait. An append holds it for the whole request body, so a commit runs only when no writer of the session
    is open: the file it renames into the blob store is never written again. The commit ends the session
    before it lets go, so whoever waited finds it gone (BLOB_UPLOAD_UNKNOWN).
    """

    def __init__(self, driver: Driver):
        self.driver = driver
        self._states: dict[tuple[str, str], _HashState] = {}
        self._lock = threading.Lock()
        self._unrecorded: dict[Digest, int] = {}  # blobs without a size record -> the size they had

    # --- blobs ----------------------------------------------------------------------------------------
    def stat_global(self, d: Digest) -> BlobInfo | None:
        """The blob `d` in the global store, or None when it is absent or not the size its commit verified.

        Belt and braces against a blob file changed after its commit (bytes appended through a stale handle,
        a truncation, a hand edit): the commit records the size as the *name* of an empty file beside the
        data, `size-<n>`. Checking it costs one stat of the name built from the size seen now, on the lookup
        behind every blob HEAD/GET; the link files keep Distribution's format (a digest and nothing else), and
        no content is read. Only when that name is missing does a listing tell a blob committed without a
        record (by Distribution, or before k3sreg kept one; served as it is) from one whose size changed; the
        blobs found without a record are remembered, so a Distribution volume pays that listing once per blob.
        """
        data = paths.blob_data(d)
        info = self.driver.stat(data)
        if info is None or info.is_dir:
            return None
        if self.driver.stat(paths.blob_size_marker(d, info.size)) is None and self._unrecorded.get(d) != info.size:
            if any(n.startswith(paths.SIZE_MARKER) for n in self.driver.list(paths.blob_dir(d))):
                log.error("blob %s has %d bytes, not the size its commit recorded: not serving it", d, info.size)
                return None
            if len(self._unrecorded) >= _UNRECORDED_MEMO:
                self._unrecorded.clear()
            self._unrecorded[d] = info.size
        return BlobInfo(d, info.size, data)

    def stat(self, repo: str, d: Digest) -> BlobInfo:
        """The blob as seen from `repo`; BlobUnknown when it is not linked there or its data is gone."""
        if read_link(self.driver, paths.layer_link(repo, d)) != d:
            raise errors.BlobUnknown(detail={"digest": str(d)})
        info = self.stat_global(d)
        if info is None:
            raise errors.BlobUnknown(detail={"digest": str(d)})
        return info

    def link(self, repo: str, d: Digest) -> None:
        write_link(self.driver, paths.layer_link(repo, d), d)

    def delete(self, repo: str, d: Digest) -> None:
        """Unlink the blob from `repo`, as Distribution does; the bytes stay until garbage collection."""
        self.stat(repo, d)
        self.driver.delete(paths.layer_dir(repo, d))

    def mount(self, repo: str, d: Digest, source: str | None) -> BlobInfo | None:
        """Link an existing blob into `repo` from `source` (or from anywhere when None); None if impossible."""
        try:
            info = self.stat(source, d) if source is not None else self.stat_global(d)
        except errors.BlobUnknown:
            return None
        if info is not None:
            self.link(repo, d)
        return info

    def put_small(self, d: Digest, data: bytes) -> None:
        """Store verified content (a manifest) in the global store, unless it is there already."""
        if self.stat_global(d) is None:
            self._record_size(d, len(data))
            self.driver.put_content(paths.blob_data(d), data)

    def get_small(self, d: Digest) -> bytes:
        try:
            return self.driver.get_content(paths.blob_data(d))
        except PathNotFound:
            raise errors.BlobUnknown(detail={"digest": str(d)}) from None

    def adopt(self, src: str, d: Digest, size: int) -> None:
        """Install the closed, verified file `src` of `size` bytes as blob `d`; when the store has `d` already,
        `src` is removed instead."""
        if self.stat_global(d) is None:
            self._install(src, d, size)
        else:
            self.driver.delete(src)

    def _install(self, src: str, d: Digest, size: int) -> None:
        self._record_size(d, size)
        self.driver.move(src, paths.blob_data(d))

    def _record_size(self, d: Digest, size: int) -> None:
        # Written before the data and not synced: whatever a crash keeps is safe. A record without data is
        # completed by the next commit of the content (same digest, same size); data whose record was lost
        # reads as a blob committed without one.
        self.driver.put_content(paths.blob_size_marker(d, size), b"", sync=False)

    # --- uploads --------------------------------------------------------------------------------------
    def create_upload(self, repo: str, uuid: str | None = None) -> str:
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

    def _open_session(self, repo: str, uuid: str) -> tuple[Lock, int]:
        """Take the session's lock and return it with the upload's size; UploadBusy while another request has
        the session, BlobUploadUnknown when there is no such session (or it ended while we asked)."""
        try:
            lock = self.driver.try_lock(paths.upload_lock(repo, uuid))
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

    def upload_size(self, repo: str, uuid: str) -> int:
        lock, size = self._open_session(repo, uuid)
        lock.release()
        return size

    def cancel_upload(self, repo: str, uuid: str) -> None:
        lock, _ = self._open_session(repo, uuid)
        try:
            self._drop(repo, uuid)
            self.driver.delete(paths.upload_dir(repo, uuid))
        finally:
            lock.release()

    def begin_append(self, repo: str, uuid: str, start: int | None) -> Appender:
        """Open the upload for appending, holding its session until the Appender finishes or aborts; `start`
        (from Content-Range) must equal the current size."""
        lock, size = self._open_session(repo, uuid)
        try:
            if start is not None and start != size:
                raise errors.RangeInvalid(
                    f"chunk starts at {start} but the upload has {size} bytes",
                    headers=_range_headers(size),
                )
            try:
                writer = self.driver.writer(paths.upload_data(repo, uuid), append=True)
            except PathNotFound:
                raise errors.BlobUploadUnknown(detail={"uuid": uuid}) from None
            try:
                state = self._take(repo, uuid, size)
            except BaseException:
                writer.close()
                raise
        except BaseException:
            lock.release()
            raise
        return Appender(self, repo, uuid, state, writer, lock)

    def commit_upload(self, repo: str, uuid: str, d: Digest) -> BlobInfo:
        """Verify the upload against `d`, move it into the blob store and link it; the session ends either way."""
        lock, size = self._open_session(repo, uuid)
        try:
            state = self._take(repo, uuid, size) if d.algorithm == "sha256" else None
            actual = state.hasher.hexdigest() if state is not None else self._rehash(repo, uuid, d.algorithm)
            self._drop(repo, uuid)
            if actual != d.hex:
                self.driver.delete(paths.upload_dir(repo, uuid))
                raise errors.DigestInvalid(detail={"expected": str(d), "actual": f"{d.algorithm}:{actual}"})
            data = paths.upload_data(repo, uuid)
            if self.stat_global(d) is None:
                # Every writer of this session holds the lock we hold, so none is open: the file renamed into
                # the blob store is closed for good.
                self.driver.writer(data, append=True).close(sync=True)
                self._install(data, d, size)
            self.link(repo, d)
            self.driver.delete(paths.upload_dir(repo, uuid))
        finally:
            lock.release()
        return BlobInfo(d, size, paths.blob_data(d))

    # --- hash states: kept per process; another worker's chunk makes us rehash from the file ------------
    def _take(self, repo: str, uuid: str, size: int) -> _HashState:
        with self._lock:
            state = self._states.pop((repo, uuid), None)
        if state is None or state.offset != size:
            state = _HashState()
            with self.driver.reader(paths.upload_data(repo, uuid)) as f:
                while chunk := f.read(_REHASH_CHUNK):
                    state.hasher.update(chunk)
                    state.offset += len(chunk)
        return state

    def keep_state(self, repo: str, uuid: str, state: _HashState) -> None:
        with self._lock:
            self._states[(repo, uuid)] = state

    def _drop(self, repo: str, uuid: str) -> None:
        with self._lock:
            self._states.pop((repo, uuid), None)

    def _rehash(self, repo: str, uuid: str, algorithm: str) -> str:
        h = hashlib.new(algorithm)
        with self.driver.reader(paths.upload_data(repo, uuid)) as f:
            while chunk := f.read(_REHASH_CHUNK):
                h.update(chunk)
        return h.hexdigest()


def new_upload_id() -> str:
    return str(uuidlib.uuid4())


def _range_headers(size: int) -> dict[str, str]:
    return {"Range": upload_range(size)}


def upload_range(size: int) -> str:
    """The `Range` header of an upload holding `size` bytes (Distribution says 0-0 when empty)."""
    return f"0-{max(size - 1, 0)}"
