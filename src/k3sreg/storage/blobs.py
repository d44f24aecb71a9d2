"""Blobs: the global content-addressed store, and the links that put a blob in a repository.

A blob becomes visible in a repository in this order: its bytes are synced and renamed into
`blobs/<alg>/<xx>/<hex>/data` only after the digest was verified (by a `BlobWriter`), then the repository's
`_layers` link is written. A process killed at any point leaves at most a staging file (an upload, a fill,
purged later) or an unlinked blob. A link to content the store has already is written while holding the blob
(see `guard`), so that a garbage collection running meanwhile cannot remove it under the link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.driver import Driver, LockService, PathNotFound
from k3sreg.storage.guard import BlobGuard
from k3sreg.storage.links import read_link, write_link

log = logging.getLogger("k3sreg.storage")
_UNRECORDED_MEMO = 65536


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What HEAD and GET need: the digest, the exact size, and the driver path of the bytes."""

    digest: Digest
    size: int
    path: str


class BlobStore:
    """Blobs and repository links on top of a Driver (synchronous; run in threads). `locks` (shared with the
    other processes on this storage) defaults to the driver's own, if it has any."""

    def __init__(self, driver: Driver, locks: LockService | None = None):
        self.driver = driver
        self._unrecorded: dict[Digest, int] = {}  # blobs without a size record -> the size they had
        if locks is None and isinstance(driver, LockService):
            locks = driver
        self.guard = BlobGuard(driver, locks, lambda d: self.stat_global(d) is not None)

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

    def unlink(self, repo: str, d: Digest) -> None:
        """Remove `repo`'s link to `d`, if any; the bytes stay."""
        self.driver.delete(paths.layer_dir(repo, d))

    def delete(self, repo: str, d: Digest) -> None:
        """Unlink the blob from `repo`, as Distribution does; the bytes stay until garbage collection."""
        self.stat(repo, d)
        self.unlink(repo, d)

    def mount(self, repo: str, d: Digest, source: str | None) -> BlobInfo | None:
        """Link an existing blob into `repo` from `source` (or from anywhere when None); None if impossible."""
        with self.guard.hold([d]) as held:
            if d not in held.present:
                return None
            try:
                info = self.stat(source, d) if source is not None else self.stat_global(d)
            except errors.BlobUnknown:
                return None
            if info is not None:
                self.link(repo, d)
            return info

    def link_committed(self, repo: str, d: Digest, install: Callable[[], None], discard: Callable[[], None]) -> None:
        """Link blob `d` into `repo` once its verified bytes are staged: `install` moves them into place when
        the store lacks `d`, `discard` drops them when it has it. Held throughout (see `guard`): a sweep can
        neither take the copy found nor the directory the bytes go into."""
        with self.guard.hold([d]) as held:
            if d in held.present:
                discard()
            else:  # removed by a sweep meanwhile: these bytes take its place
                install()
            self.link(repo, d)

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
            self.install(src, d, size)
        else:
            self.driver.delete(src)

    def install(self, src: str, d: Digest, size: int) -> None:
        """Move the closed, durable, verified file `src` of `size` bytes into place as blob `d`."""
        self._record_size(d, size)
        self.driver.move(src, paths.blob_data(d))

    def _record_size(self, d: Digest, size: int) -> None:
        # Written before the data and not synced: whatever a crash keeps is safe. A record without data is
        # completed by the next commit of the content (same digest, same size); data whose record was lost
        # reads as a blob committed without one.
        self.driver.put_content(paths.blob_size_marker(d, size), b"", sync=False)
