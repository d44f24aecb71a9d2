"""Single-flight fills: cuts, resumes, clean-up, and bytes that do not match their digest (held back, then cut)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.fills import FileFillStaging
from k3sreg.storage.store import Store
from k3sreg.upstream.fill import FillCoordinator

DATA = bytes(range(256)) * 16384  # 4 MiB
CUT = (2 << 20) + (256 << 10)  # past the second 1 MiB buffer, so the first one has reached the client


class Stream:
    """The part of BlobStream a fill uses: `size` and the chunks from `offset`, optionally breaking off at `cut`."""

    def __init__(self, data: bytes, offset: int, cut: int | None, pause: float = 0.0) -> None:
        self.size: int | None = len(data)
        self._data, self._offset, self._cut, self._pause = data, offset, cut, pause

    async def _chunks(self) -> AsyncIterator[bytes]:
        end = len(self._data) if self._cut is None else self._cut
        for i in range(self._offset, end, 256 << 10):
            await asyncio.sleep(self._pause)
            yield self._data[i:min(i + (256 << 10), end)]
        if self._cut is not None:
            raise errors.Unavailable("upstream cut the connection")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()


class Upstream:
    """An upstream whose first `cuts` downloads break off at CUT; records the offset each download asked for."""

    name = "docker.io"

    def __init__(self, cuts: int, retries: int = 0, data: bytes = DATA, pause: float = 0.0) -> None:
        self.cuts, self.offsets = cuts, list[int]()
        self.settings = SimpleNamespace(retries=retries)
        self.data, self.pause = data, pause

    @property
    def downloads(self) -> int:
        return len(self.offsets)

    @asynccontextmanager
    async def open_blob(self, _repo: str, _d: Digest, offset: int = 0) -> AsyncIterator[Stream]:
        self.offsets.append(offset)
        yield Stream(self.data, offset, CUT if self.downloads <= self.cuts else None, self.pause)


async def read(coordinator: FillCoordinator, upstream: Any, d: Digest, pause: float = 0.0,
               received: list[bytes] | None = None, end: int | None = None) -> bytes:
    """The blob (up to `end`) as a client receives it, also appended to `received`; `pause` after each piece
    makes a slow client."""
    source = await coordinator.open(upstream, "library/x", "docker.io/library/x", d)
    received = [] if received is None else received
    async for chunk in source.chunks(0, source.size if end is None else end):
        received.append(chunk)
        await asyncio.sleep(pause)
    return b"".join(received)


async def settled(coordinator: FillCoordinator) -> None:
    """Wait for the leaders to commit: clients get the last bytes once they are checked, a moment before that."""
    await asyncio.gather(*coordinator._tasks, return_exceptions=True)


@pytest.fixture
async def fills(tmp_path: Path) -> AsyncIterator[tuple[Store, FillCoordinator]]:
    """A filesystem store under tmp_path and its fill coordinator, closed afterwards."""
    store = Store(FilesystemDriver(tmp_path))
    coordinator = FillCoordinator(store)
    yield store, coordinator
    await coordinator.close()
    store.close()


D = Digest.of(DATA)


async def test_request_after_a_failed_fill_waits_for_its_cleanup_and_fetches_again(
        fills: tuple[Store, FillCoordinator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failed fill's follower gets an error; a request made during the (slow) cleanup gets the whole blob."""
    slow_discard = FileFillStaging.discard

    def discard(*args: Any) -> None:
        time.sleep(0.3)  # a busy disk: the failed fill is still in place when the next request arrives
        slow_discard(*args)

    monkeypatch.setattr(FileFillStaging, "discard", discard)
    store, coordinator = fills
    upstream = Upstream(cuts=1)
    # A slow client is between two pieces when the fill fails: it sees the failure during the cleanup.
    with pytest.raises(errors.Unavailable):
        await read(coordinator, upstream, D, pause=0.05)
    assert await read(coordinator, upstream, D) == DATA
    await settled(coordinator)
    assert upstream.downloads == 2
    assert store.blobs.stat_global(D) is not None
    assert not list((tmp_path / paths.FILLS).glob("*.partial"))


async def test_cut_download_resumes_from_what_arrived(fills: tuple[Store, FillCoordinator]) -> None:
    """With retries left, a cut download continues with a Range from the bytes kept; the client sees no error."""
    store, coordinator = fills
    upstream = Upstream(cuts=1, retries=1)
    assert await read(coordinator, upstream, D) == DATA
    await settled(coordinator)
    assert upstream.offsets == [0, CUT]
    assert store.blobs.stat_global(D) is not None


async def test_cuts_beyond_the_retries_fail_and_cache_nothing(fills: tuple[Store, FillCoordinator]) -> None:
    """Each resume counts against `retries`: cut more often than that, the fill fails and leaves nothing."""
    store, coordinator = fills
    upstream = Upstream(cuts=3, retries=1)
    with pytest.raises(errors.Unavailable, match=r"cut the connection \(after 1 resume with a Range\)$"):
        await read(coordinator, upstream, D)
    assert upstream.downloads == 2
    assert store.blobs.stat_global(D) is None


async def started(root: Path) -> None:
    """Wait until a fill under `root` has announced its size (as followers in other processes do)."""
    for _ in range(500):
        if list(root.glob("*.size")):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no fill started")


WRONG = DATA[:-1] + b"!"  # as long as the blob, one byte off


@pytest.mark.parametrize("end", [len(DATA), 1000], ids=["whole", "range"])
async def test_wrong_bytes_are_held_back_then_cut(fills: tuple[Store, FillCoordinator], end: int) -> None:
    """Bytes that do not match the digest: every client misses the end of its answer and gets an error."""
    store, coordinator = fills
    upstream = Upstream(cuts=0, data=WRONG, pause=0.01)
    pieces: list[list[bytes]] = [[], [], []]
    results = await asyncio.gather(*(read(coordinator, upstream, D, received=p, end=end) for p in pieces),
                                   return_exceptions=True)
    assert all(isinstance(r, errors.Unavailable) and "do not match" in str(r) for r in results), results
    assert all(sum(map(len, p)) < end for p in pieces)
    assert upstream.downloads == 1 and store.blobs.stat_global(D) is None


async def test_other_process_holds_back_wrong_bytes_and_gets_right_ones(
        fills: tuple[Store, FillCoordinator], tmp_path: Path) -> None:
    """A follower in another process (its own coordinator and lock) misses the end of wrong bytes, and gets
    the whole blob once the upstream sends the right ones."""
    store, coordinator = fills
    other = FillCoordinator(Store(FilesystemDriver(tmp_path)))
    try:
        for data, fails in ((WRONG, True), (DATA, False)):
            upstream = Upstream(cuts=0, data=data, pause=0.01)
            lead = asyncio.create_task(read(coordinator, upstream, D))
            await started(tmp_path / paths.FILLS)
            tailed: list[bytes] = []
            if fails:
                with pytest.raises(errors.Unavailable, match="another worker"):
                    await read(other, upstream, D, received=tailed)
                with pytest.raises(errors.Unavailable):
                    await lead
                assert 0 < sum(map(len, tailed)) < len(DATA) and store.blobs.stat_global(D) is None
            else:
                assert await read(other, upstream, D) == DATA == await lead
                await settled(coordinator)
                assert store.blobs.stat_global(D) is not None
            assert not other._fills and upstream.downloads == 1
    finally:
        await other.close()
        other.store.close()


async def test_empty_body_for_a_non_empty_digest_is_refused(fills: tuple[Store, FillCoordinator]) -> None:
    """An upstream answering 200 with no bytes fails before any answer starts (its headers would complete it)."""
    store, coordinator = fills
    with pytest.raises(errors.Unavailable, match="empty body"):
        await coordinator.open(Upstream(cuts=0, data=b""), "library/x", "docker.io/library/x", D)
    assert store.blobs.stat_global(D) is None
