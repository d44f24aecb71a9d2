"""Racing requests against one k3sreg (one worker, and two sharing the storage): a PATCH racing the commit of
its own session, and PUTs racing DELETEs of one tag.

docker-registry 2.8.2 is not run as the control here: it has the same PATCH/commit race (the committed blob
grows), so these tests would fail against it by design.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest

from tests.peers.registry import DockerRegistry, K3sregServer

PAYLOAD = random.Random(8).randbytes(19_000)
UPSTREAM_REPO = "library/race"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    """A docker-registry holding library/race:1, whose one layer is PAYLOAD (not cached by k3sreg yet)."""
    with DockerRegistry(tmp_path_factory.mktemp("upstream")) as up:
        asyncio.run(_seed(up.url))
        yield up


async def _seed(base: str) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    async with aiohttp.ClientSession() as s:
        for blob in (config, PAYLOAD):
            await push_blob(s, base, UPSTREAM_REPO, blob)
        manifest = manifest_of(config, PAYLOAD)
        async with s.put(f"{base}/v2/{UPSTREAM_REPO}/manifests/1", data=manifest,
                         headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}) as r:
            assert r.status == 201, await r.text()


def manifest_of(config: bytes, layer: bytes) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                    "size": len(layer)}]}).encode()


async def push_blob(s: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> None:
    """POST a session, then PUT ?digest= with the whole body (what every registry implements)."""
    async with s.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        assert r.status == 202, await r.text()
        location = urljoin(base, r.headers["Location"])
    sep = "&" if "?" in location else "?"
    async with s.put(f"{location}{sep}digest={sha256(data)}", data=data) as r:
        assert r.status == 201, await r.text()


@pytest.fixture(scope="module", params=[1, 2], ids=["k3sreg", "k3sreg-w2"])
def k3sreg(request: pytest.FixtureRequest, upstream: DockerRegistry,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """k3sreg with one or two workers, caching `upstream` as docker.io."""
    config = {"upstreams": [{"name": "docker.io", "url": upstream.url}]}
    with K3sregServer(tmp_path_factory.mktemp("k3sreg"), workers=request.param, config=config) as reg:
        yield reg


async def race_patch_with_commit(reg: K3sregServer, s: aiohttp.ClientSession, repo: str) -> tuple[int, int, str]:
    """POST; PATCH PAYLOAD; a second PATCH (Content-Length: 100) sends 50 bytes and holds; meanwhile PUT
    ?digest=<PAYLOAD's digest>; then the PATCH's other 50 bytes. Returns (PATCH status, PUT status, session URL).
    """
    async with s.post(f"{reg.url}/v2/{repo}/blobs/uploads/") as r:
        assert r.status == 202
        location = urljoin(reg.url, r.headers["Location"])
    async with s.patch(location, data=PAYLOAD, headers={"Content-Type": "application/octet-stream"}) as r:
        assert r.status == 202
        location = urljoin(reg.url, r.headers["Location"])
    path = location[len(reg.url):]
    reader, writer = await asyncio.open_connection("127.0.0.1", reg.port)
    writer.write(f"PATCH {path} HTTP/1.1\r\nHost: {reg.host}\r\nContent-Type: application/octet-stream\r\n"
                 "Content-Length: 100\r\nConnection: close\r\n\r\n".encode() + b"x" * 50)
    await writer.drain()
    await asyncio.sleep(0.5)  # the server is inside the PATCH now
    sep = "&" if "?" in location else "?"
    put = asyncio.create_task(_status(s, "PUT", f"{location}{sep}digest={sha256(PAYLOAD)}"))
    await asyncio.sleep(1.0)  # a PUT that does not wait for the PATCH has committed by now
    writer.write(b"y" * 50)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return int(answer.split(b" ", 2)[1]), await put, location


async def _status(s: aiohttp.ClientSession, method: str, url: str) -> int:
    async with s.request(method, url) as r:
        await r.read()
        return r.status


async def assert_blob_is_payload_or_absent(s: aiohttp.ClientSession, url: str) -> None:
    async with s.get(url) as r:
        body = await r.read()
        assert r.status in (200, 404), r.status
        if r.status == 200:
            assert sha256(body) == sha256(PAYLOAD), f"served {len(body)} bytes under the digest of {len(PAYLOAD)}"


async def test_patch_racing_its_commit_never_reaches_the_blob(k3sreg: K3sregServer) -> None:
    """A PATCH held open while its session commits never adds bytes to the blob, and the session is gone after."""
    repo = f"race/local{k3sreg.workers}"
    blob_url = f"{k3sreg.url}/v2/{repo}/blobs/{sha256(PAYLOAD)}"
    async with aiohttp.ClientSession() as s:
        patch_status, put_status, location = await race_patch_with_commit(k3sreg, s, repo)
        # Serialized, either order is right: the PATCH first (202), then the commit sees 19,100 bytes (400
        # DIGEST_INVALID); or the commit first (201), then the PATCH finds no session (404).
        assert (patch_status, put_status) in ((202, 400), (404, 201)), (patch_status, put_status)
        await assert_blob_is_payload_or_absent(s, blob_url)
        async with s.patch(location, data=b"late") as r:
            assert r.status == 404 and (await r.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        await push_blob(s, k3sreg.url, repo, PAYLOAD)
        async with s.get(blob_url) as r:
            assert r.status == 200 and await r.read() == PAYLOAD


async def test_patch_racing_a_commit_cannot_poison_the_cache(k3sreg: K3sregServer) -> None:
    """The same race under an uncached upstream layer's digest, in a local repo, leaves cache pulls correct."""
    async with aiohttp.ClientSession() as s:
        await race_patch_with_commit(k3sreg, s, f"poison/w{k3sreg.workers}")
        async with s.get(f"{k3sreg.url}/v2/{UPSTREAM_REPO}/blobs/{sha256(PAYLOAD)}?ns=docker.io") as r:
            body = await r.read()
            assert r.status == 200 and sha256(body) == sha256(PAYLOAD), (r.status, len(body))


async def test_tag_puts_racing_deletes_never_fail(k3sreg: K3sregServer) -> None:
    """Many concurrent PUTs and DELETEs of one tag: no 5xx, and the tag is then absent or names a whole manifest."""
    repo = f"race/tags{k3sreg.workers}"
    base = f"{k3sreg.url}/v2/{repo}"
    config = b'{"os":"linux"}'
    manifests = [manifest_of(config, layer) for layer in (b"one", b"two")]
    ctype = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as s:
        for blob in (config, b"one", b"two"):
            await push_blob(s, k3sreg.url, repo, blob)

        async def put(i: int) -> tuple[str, int]:
            async with s.put(f"{base}/manifests/t", data=manifests[i % 2], headers=ctype) as r:
                await r.read()
                return "PUT", r.status

        async def delete() -> tuple[str, int]:
            async with s.delete(f"{base}/manifests/t") as r:
                await r.read()
                return "DELETE", r.status

        jobs = [put(i) for i in range(300)] + [delete() for _ in range(300)]
        random.Random(3).shuffle(jobs)
        answers = Counter(await asyncio.gather(*jobs))
        assert set(answers) <= {("PUT", 201), ("DELETE", 202), ("DELETE", 404)}, answers
        async with s.get(f"{base}/manifests/t", headers={"Accept": ctype["Content-Type"]}) as r:
            body = await r.read()
            assert r.status in (200, 404)
            if r.status == 200:
                assert body in manifests and r.headers["Docker-Content-Digest"] == sha256(body)
        async with s.get(f"{base}/tags/list") as r:
            listed = (await r.json())["tags"] if r.status == 200 else []
        assert ("t" in (listed or [])) == (body in manifests)
    leftovers = os.listdir(Path(k3sreg.root) / "docker/registry/v2/_tmp")
    assert leftovers == [], leftovers
