"""The access clock of cached content: when each manifest and blob was last pulled, which eviction reads
(`Inventory.manifests_of`, `Inventory.layer_accessed`), and when the upstream last confirmed a tag
(`TagStore.checked_at`).

On local files the clock is the mtime of the link files, so it survives restarts and is shared by every worker
without a word between them: a pull sets the mtime of the revision or layer link it used, a confirmed tag that
of its `current` link. An object store cannot change an object's mtime; there the clock will be records of its
own, written through the same methods. A store without LocalFiles records nothing.
"""

from __future__ import annotations

import time

from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.store import Store

_MEMO = 100_000


class AccessClock:
    """Records pulls at most once per `every` seconds per link, in the background, so that hits stay cheap."""

    def __init__(self, store: Store, every: float):
        self.store, self.every = store, every
        self._last: dict[str, float] = {}

    def manifest_pulled(self, repo: str, d: Digest) -> None:
        self._record(paths.revision_link(repo, d))

    def blob_pulled(self, repo: str, d: Digest) -> None:
        self._record(paths.layer_link(repo, d))

    async def tag_confirmed(self, repo: str, tag: str) -> None:
        """The upstream still has `tag` where the cache has it: trust it for another `tagttl`."""
        files = self.store.local_files
        if files is not None:
            await self.store.run(files.touch, paths.tag_current_link(repo, tag))

    def _record(self, path: str) -> None:
        files = self.store.local_files
        if files is None:
            return
        now = time.monotonic()
        if now - self._last.get(path, -1e18) < self.every:
            return
        self._last[path] = now
        if len(self._last) > _MEMO:
            self._last.clear()
        self.store.spawn(files.touch, path)
