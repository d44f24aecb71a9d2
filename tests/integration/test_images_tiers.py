"""Tiers of registries (local → regional → global): a k3sreg whose upstream is another k3sreg fetches each blob
once, and so does the tier above it.

    8 cold clients ──?ns=docker.io──► local k3sreg ──► regional k3sreg (proxy: remoteurl) ──► docker-registry
                                      upstreams: docker.io                                      "global"
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import urllib.request
from pathlib import Path

import aiohttp

from tests.peers.registry import DockerRegistry, K3sregServer


def push(registry: DockerRegistry, repo: str, data: bytes) -> str:
    """POST then PUT one blob into `registry`; its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.Request(f"{registry.url}/v2/{repo}/blobs/uploads/", data=b"", method="POST")
    with urllib.request.urlopen(start, timeout=30) as answer:
        location = answer.headers["Location"]
    location = registry.url + location if location.startswith("/") else location
    sep = "&" if "?" in location else "?"
    put = urllib.request.Request(f"{location}{sep}digest={digest}", data=data, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(put, timeout=30) as answer:
        assert answer.status == 201
    return digest


async def herd(url: str, clients: int) -> list[bytes]:
    async with aiohttp.ClientSession() as session:
        async def one() -> bytes:
            async with session.get(url) as answer:
                assert answer.status == 200, answer.status
                return await answer.read()
        return await asyncio.gather(*(one() for _ in range(clients)))


def blob_gets(registry: DockerRegistry | K3sregServer, digest: str) -> int:
    return len([p for m, p in registry.requests() if m == "GET" and f"/blobs/{digest}" in p])


def test_two_k3sreg_tiers_fetch_each_blob_once_per_tier(tmp_path: Path) -> None:
    """8 cold clients at the local tier: exactly one GET per blob at the regional k3sreg and at the global one."""
    rng = random.Random(8)
    blobs = [rng.randbytes(6 << 20), rng.randbytes(1 << 20)]
    with DockerRegistry(tmp_path / "global") as world, \
            K3sregServer(tmp_path / "regional", config={"proxy": {"remoteurl": world.url}}) as regional, \
            K3sregServer(tmp_path / "local", workers=2,
                         config={"upstreams": [{"name": "docker.io", "url": regional.url}]}) as local:
        digests = [push(world, "library/tier", data) for data in blobs]
        for digest, data in zip(digests, blobs, strict=True):
            bodies = asyncio.run(herd(f"{local.url}/v2/library/tier/blobs/{digest}?ns=docker.io", 8))
            assert all(body == data for body in bodies)
        for digest in digests:
            regional.wait_request(lambda m, p, d=digest: m == "GET" and f"/blobs/{d}" in p)
            world.wait_request(lambda m, p, d=digest: m == "GET" and f"/blobs/{d}" in p)
        assert [blob_gets(regional, d) for d in digests] == [1, 1]
        assert [blob_gets(world, d) for d in digests] == [1, 1]
