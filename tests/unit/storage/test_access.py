"""What the pull-through cache asks of the store besides content: the access clock, and the eviction lock."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.access import AccessClock
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.memory import MemoryDriver
from k3sreg.storage.store import Store

D = Digest.of(b"x")
OLD = 1_000_000.0


async def settled(store: Store) -> None:
    """Wait for the store's background work (the clock records pulls there)."""
    await asyncio.gather(*store._spawned)


async def test_pulls_move_the_clock_at_most_once_per_period(tmp_path: Path) -> None:
    """A pull sets the mtime of the link it used; a second pull within `every` seconds does not touch it again,
    and a confirmed tag's current link is touched at once."""
    store = Store(FilesystemDriver(tmp_path))
    for link in (paths.revision_link("c/r", D), paths.layer_link("c/r", D), paths.tag_current_link("c/r", "t")):
        store.driver.put_content(link, str(D).encode())
        os.utime(tmp_path / link, (OLD, OLD))
    clock = AccessClock(store, every=3600)
    clock.manifest_pulled("c/r", D)
    clock.blob_pulled("c/r", D)
    await settled(store)
    inventory = store.inventory()
    assert inventory.manifests_of(["c/r"])[0][0] > OLD and inventory.layer_accessed("c/r", D) > OLD
    os.utime(tmp_path / paths.layer_link("c/r", D), (OLD, OLD))
    clock.blob_pulled("c/r", D)
    await settled(store)
    assert inventory.layer_accessed("c/r", D) == OLD
    await clock.tag_confirmed("c/r", "t")
    assert (await store.tag_checked_at("c/r", "t") or 0) > OLD
    store.close()


async def test_a_store_without_local_files_records_nothing() -> None:
    """On a driver without LocalFiles the clock is a no-op, never an error."""
    store = Store(MemoryDriver())
    clock = AccessClock(store, every=0)
    clock.manifest_pulled("c/r", D)
    await clock.tag_confirmed("c/r", "t")
    assert not store._spawned
    store.close()


async def test_one_worker_at_a_time_evicts(tmp_path: Path) -> None:
    """The eviction lock is held by one store (worker process) at a time, and free again once released."""
    one, two = Store(FilesystemDriver(tmp_path)), Store(FilesystemDriver(tmp_path))
    held = await one.claim_eviction()
    assert held is not None and await two.claim_eviction() is None
    held.release()
    again = await two.claim_eviction()
    assert again is not None
    again.release()
    one.close()
    two.close()
