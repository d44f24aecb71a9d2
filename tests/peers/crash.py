"""Helpers for crash-safety tests: stream a request body, SIGKILL the registry part-way, push blobs directly.

API:
  ``Killer(reg)``: ``body(data, kill_after)`` is an async body that stops after ``kill_after`` bytes and waits;
  ``run(expect_on_disk, max_wait=3.0)`` (as a task) waits for that point and for the server to have written
  ``expect_on_disk`` more bytes under its root (at most ``max_wait`` s), then ``reg.kill()``; ``on_disk`` keeps
  what had been written by then.
  ``open_upload(session, reg, repo) -> location``, ``push_blob(session, reg, repo, data, digest)`` (POST, then
  PUT ?digest=; expects 201), ``with_query(url, query)``.
  ``disk_bytes(root)``, ``blob_files(root, digest)`` (the committed blob file in Distribution's layout, if any).
  ``push_base(reg, skopeo, layout)`` / ``assert_base_served(reg, skopeo, layout, out)``: commit the test image
  and index to ``crash/base`` before a crash, and check afterwards that they are served byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from tests.peers import api
from tests.peers.images import TestLayout, read_blob
from tests.peers.registry import RegistryProcess
from tests.peers.skopeo import Skopeo

CHUNK = 256 * 1024


def disk_bytes(root: Path) -> int:
    """Total size of the files under ``root``."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def blob_files(root: Path, digest: str) -> list[Path]:
    """The committed blob file of ``digest`` in Distribution's layout, if it exists."""
    hexpart = digest.split(":", 1)[1]
    path = root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
    return [path] if path.exists() else []


class Killer:
    """Streams a request body and SIGKILLs the registry once part of it is out and has reached the server."""

    def __init__(self, reg: RegistryProcess) -> None:
        self.reg = reg
        self.sent_enough = asyncio.Event()
        self.killed = asyncio.Event()
        self.baseline = disk_bytes(reg.root)
        self.on_disk = 0

    async def body(self, data: bytes, kill_after: int) -> AsyncIterator[bytes]:
        """Yield ``data`` in chunks; past ``kill_after`` wait for the kill instead of sending the rest."""
        offset = 0
        while offset < len(data):
            if offset >= kill_after:
                self.sent_enough.set()
                await self.killed.wait()
                return
            end = min(offset + CHUNK, kill_after, len(data))
            yield data[offset:end]
            offset = end
        self.sent_enough.set()

    async def run(self, expect_on_disk: int, max_wait: float = 3.0) -> None:
        """Wait for the body to be partly sent and for the server to have written ``expect_on_disk`` bytes of it
        (``max_wait`` seconds at most), then SIGKILL; ``on_disk`` records what it had written by then."""
        await self.sent_enough.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while loop.time() < deadline:
            self.on_disk = await asyncio.to_thread(disk_bytes, self.reg.root) - self.baseline
            if self.on_disk >= expect_on_disk:
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(self.reg.kill)
        self.killed.set()


async def open_upload(session: aiohttp.ClientSession, reg: RegistryProcess, repo: str) -> str:
    """POST a new upload session; return its absolute Location."""
    async with session.post(f"{reg.url}/v2/{repo}/blobs/uploads/") as resp:
        assert resp.status == 202, await resp.text()
        return urljoin(reg.url, resp.headers["Location"])


def with_query(url: str, query: str) -> str:
    """``url`` with ``query`` appended to its query string."""
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def push_blob(session: aiohttp.ClientSession, reg: RegistryProcess, repo: str, data: bytes, digest: str) -> None:
    """Monolithic push (POST then PUT ?digest= with the whole body); expects 201."""
    location = await open_upload(session, reg, repo)
    async with session.put(
        with_query(location, f"digest={digest}"), data=data, headers={"Content-Type": "application/octet-stream"}
    ) as resp:
        assert resp.status == 201, await resp.text()


def push_base(reg: RegistryProcess, skopeo: Skopeo, layout: TestLayout) -> None:
    """Commit the test image and index before the crash."""
    skopeo.copy(layout.oci_ref(), f"docker://{reg.host}/crash/base:1")
    skopeo.copy(layout.oci_ref(layout.multi_tag), f"docker://{reg.host}/crash/base:multi", all=True)


def assert_base_served(reg: RegistryProcess, skopeo: Skopeo, layout: TestLayout, out: Path) -> None:
    """What ``push_base`` committed is still served byte for byte."""
    assert sorted(api.tags(reg.url, "crash/base")) == ["1", "multi"]
    assert api.manifest(reg.url, "crash/base", "1").body == read_blob(layout.root, layout.single.digest)
    skopeo.copy(f"docker://{reg.host}/crash/base:multi", f"oci:{out}:m", all=True)
    for image in layout.platforms.values():
        for blob in image.blobs:
            assert read_blob(out, blob) == read_blob(layout.root, blob)
