"""Single-flight fills: a request that arrives while a failed fill is still being cleaned up starts a new one."""

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
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.registry import Registry
from k3sreg.upstream import fill as fill_module
from k3sreg.upstream.fill import FillCoordinator

DATA = bytes(range(256)) * 16384  # 4 MiB
CUT = (2 << 20) + (256 << 10)  # past the second 1 MiB buffer, so the first one has reached the client


class Stream:
    """The part of BlobStream a fill uses: `size` and the chunks from `offset`, optionally breaking off at `cut`."""

    def __init__(self, data: bytes, offset: int, cut: int | None) -> None:
        self.size: int | None = len(data)
        self._data, self._offset, self._cut = data, offset, cut

    async def _chunks(self) -> AsyncIterator[bytes]:
        end = len(self._data) if self._cut is None else self._cut
        for i in range(self._offset, end, 256 << 10):
            yield self._data[i:min(i + (256 << 10), end)]
        if self._cut is not None:
            raise errors.Unavailable("upstream cut the connection")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()


class Upstream:
    """An upstream whose first `cuts` downloads break off at CUT; records the offset each download asked for."""

    name = "docker.io"

    def __init__(self, cuts: int, retries: int = 0) -> None:
        self.cuts, self.offsets = cuts, list[int]()
        self.settings = SimpleNamespace(retries=retries)

    @property
    def downloads(self) -> int:
        return len(self.offsets)

    @asynccontextmanager
    async def open_blob(self, _repo: str, _d: Digest, offset: int = 0) -> AsyncIterator[Stream]:
        self.offsets.append(offset)
        yield Stream(DATA, offset, CUT if self.downloads <= self.cuts else None)


async def read(coordinator: FillCoordinator, upstream: Any, d: Digest, pause: float = 0.0) -> bytes:
    """The blob as a client receives it; `pause` after each piece makes a slow client."""
    source = await coordinator.open(upstream, "library/x", "docker.io/library/x", d)
    received = []
    async for chunk in source.chunks(0):
        received.append(chunk)
        await asyncio.sleep(pause)
    return b"".join(received)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[Registry, FillCoordinator]]:
    """A filesystem registry under tmp_path and its fill coordinator, closed afterwards."""
    registry = Registry(FilesystemDriver(tmp_path))
    coordinator = FillCoordinator(registry)
    yield registry, coordinator
    await coordinator.close()
    registry.close()


D = Digest.of(DATA)


async def test_request_after_a_failed_fill_waits_for_its_cleanup_and_fetches_again(
        store: tuple[Registry, FillCoordinator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failed fill's follower gets an error; a request made during the (slow) cleanup gets the whole blob."""
    slow_discard = fill_module._discard

    def discard(*args: Any) -> None:
        time.sleep(0.3)  # a busy disk: the failed fill is still in place when the next request arrives
        slow_discard(*args)

    monkeypatch.setattr(fill_module, "_discard", discard)
    registry, coordinator = store
    upstream = Upstream(cuts=1)
    # A slow client is between two pieces when the fill fails: it sees the failure during the cleanup.
    with pytest.raises(errors.Unavailable):
        await read(coordinator, upstream, D, pause=0.05)
    assert await read(coordinator, upstream, D) == DATA
    assert upstream.downloads == 2
    assert registry.blobs.stat_global(D) is not None
    assert not list((tmp_path / fill_module.FILLS.lstrip("/")).glob("*.partial"))


async def test_cut_download_resumes_from_what_arrived(store: tuple[Registry, FillCoordinator]) -> None:
    """With retries left, a cut download continues with a Range from the bytes kept; the client sees no error."""
    registry, coordinator = store
    upstream = Upstream(cuts=1, retries=1)
    assert await read(coordinator, upstream, D) == DATA
    assert upstream.offsets == [0, CUT]
    assert registry.blobs.stat_global(D) is not None


async def test_cuts_beyond_the_retries_fail_and_cache_nothing(store: tuple[Registry, FillCoordinator]) -> None:
    """Each resume counts against `retries`: cut more often than that, the fill fails and leaves nothing."""
    registry, coordinator = store
    upstream = Upstream(cuts=3, retries=1)
    with pytest.raises(errors.Unavailable):
        await read(coordinator, upstream, D)
    assert upstream.downloads == 2
    assert registry.blobs.stat_global(D) is None
