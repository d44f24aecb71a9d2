"""The pull-through cache against upstreams that misbehave: wrong bytes or an HTML page with 200, manifests that
do not match their digest, an upstream that does not answer at all.

A docker-registry 2.8.2 holds the content; `tests.peers.hostile.HostileUpstream` stands in front of it and spoils
chosen answers; k3sreg (one or two workers) uses that front as its docker.io upstream. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.test_proxy import cache_behind
from tests.peers.hostile import HostileUpstream
from tests.peers.registry import DockerRegistry, K3sregServer
from tests.peers.skopeo import Skopeo

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = {"Accept": OCI_MANIFEST}
CLIENTS = 12
_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    """The real registry behind the hostile front."""
    with DockerRegistry(tmp_path_factory.mktemp("hostile-hub")) as reg:
        yield reg


async def push_blob(s: aiohttp.ClientSession, reg: DockerRegistry, repo: str, data: bytes) -> str:
    """POST then PUT with the digest (docker-registry 2.8 resets a monolithic POST with a body)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with s.post(f"{reg.url}/v2/{repo}/blobs/uploads/") as r:
        assert r.status == 202
        location = r.headers["Location"]
    location = reg.url + location if location.startswith("/") else location
    async with s.put(location, params={"digest": digest}, data=data) as r:
        assert r.status == 201
    return digest


async def push_image(s: aiohttp.ClientSession, reg: DockerRegistry, repo: str, tag: str, layer: bytes) -> str:
    """An OCI image of one layer under `repo:tag`; returns the manifest digest (the same for the same layer)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
                        ).encode()
    doc = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": await push_blob(s, reg, repo, config), "size": len(config)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                  "digest": await push_blob(s, reg, repo, layer), "size": len(layer)}]}).encode()
    async with s.put(f"{reg.url}/v2/{repo}/manifests/{tag}", data=doc,
                     headers={"Content-Type": OCI_MANIFEST}) as r:
        assert r.status == 201
        return r.headers["Docker-Content-Digest"]


async def get(s: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[str, int, bytes]:
    """("complete", status, body), or ("cut", status, bytes received) when the connection broke off mid-body."""
    received = b""
    status = 0
    try:
        async with s.get(url, **kw) as r:
            status = r.status
            async for chunk in r.content.iter_any():
                received += chunk
            await r.read()
            return "complete", status, received
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return "cut", status, received


async def herd(s: aiohttp.ClientSession, url: str) -> list[tuple[str, int, bytes]]:
    """CLIENTS requests for `url`, each on its own connection, started a little apart: a worker takes every
    connection that is waiting when it wakes, so a burst would all land in one worker."""
    tasks = []
    for _ in range(CLIENTS):
        tasks.append(asyncio.create_task(get(s, url)))
        await asyncio.sleep(0.03)
    return await asyncio.gather(*tasks)


def problems(log: str) -> list[str]:
    """The log lines at warning level or above."""
    return [line for line in log.splitlines() if _PROBLEM.search(line)]


def blob_file(cache: K3sregServer, digest: str) -> Path:
    return cache.root / f"docker/registry/v2/blobs/sha256/{digest[7:9]}/{digest[7:]}/data"


async def settle(cache: K3sregServer, digest: str) -> list[Path]:
    """Wait until no fill of `digest` is in progress; returns what is left of it under _fills."""
    fills = cache.root / "docker/registry/v2/_fills"
    for _ in range(200):
        left = [p for p in fills.glob(f"{digest[7:]}.*") if p.suffix != ".lock"] if fills.exists() else []
        if not left:
            break
        await asyncio.sleep(0.05)
    return left


@pytest.mark.parametrize(("spoil", "workers"), [("flip", 1), ("flip", 2), ("html", 2)])
async def test_blob_that_misses_its_digest_cuts_every_client(hub: DockerRegistry, tmp_path: Path, spoil: str,
                                                             workers: int) -> None:
    """Wrong bytes (or an HTML page) with 200 for a blob: every client fed from the fetch, in the leader's worker
    and in the other one, sees a cut transfer, never a complete 200; nothing is cached; one log line per failed
    request; once the upstream is right again the blob is served."""
    data = random.Random(11).randbytes(3 << 20)
    async with aiohttp.ClientSession() as s, HostileUpstream(hub.url) as up:
        digest = await push_blob(s, hub, f"library/spoiled{spoil}{workers}", data)
        async with cache_behind(up.url, tmp_path / "cache", workers) as cache:
            url = f"{cache.url}/v2/library/spoiled{spoil}{workers}/blobs/{digest}?ns=docker.io"
            up.blobs, up.rate = spoil, 4 << 20
            outcomes = await herd(s, url)
            left = await settle(cache, digest)
            cached = blob_file(cache, digest).exists()
            failed_log = cache.log_text()
            up.blobs = None
            fixed = await get(s, url)
    fetches = [p for m, p in up.requests if m == "GET" and f"/blobs/{digest}" in p]
    assert all(kind == "cut" or status >= 500 for kind, status, _ in outcomes), \
        [(kind, status, len(body)) for kind, status, body in outcomes]
    assert not any(kind == "complete" and status == 200 for kind, status, _ in outcomes)
    assert sum(kind == "cut" for kind, _, _ in outcomes) > 0 and not cached and not left
    if spoil == "flip":
        # Still one fetch for all of them; each cut client had everything but the end.
        assert len(fetches) == 2
        assert all(0 < len(body) < len(data) for kind, _, body in outcomes if kind == "cut")
    if spoil == "flip" and workers == 2:
        assert "in another worker" in failed_log, "no client followed the fill from the other worker"
    lines = problems(failed_log)
    assert len(lines) == CLIENTS, lines
    assert "Traceback" not in failed_log
    assert fixed[:2] == ("complete", 200) and hashlib.sha256(fixed[2]).hexdigest() == digest[7:]


@pytest.mark.parametrize("spoil", ["html", "flip", "wrong-digest"])
async def test_manifest_garbage_is_an_upstream_failure(hub: DockerRegistry, tmp_path: Path, spoil: str) -> None:
    """An HTML page with 200, a body that misses its digest, or a Docker-Content-Digest naming other content:
    a cached tag is served stale, anything else answers 503 UNAVAILABLE (never 400, never the bytes), nothing
    is stored, one log line per request; once the upstream is right again both tags are fetched."""
    repo = f"library/manifest{spoil.replace('-', '')}"
    async with aiohttp.ClientSession() as s, HostileUpstream(hub.url) as up:
        first = await push_image(s, hub, repo, "1", b"first")
        async with cache_behind(up.url, tmp_path / "cache", tagttl="1ms") as cache:
            base = f"{cache.url}/v2/{repo}/manifests"
            async with s.get(f"{base}/1?ns=docker.io", headers=ACCEPT) as r:
                assert r.status == 200 and r.headers["Docker-Content-Digest"] == first
            second = await push_image(s, hub, repo, "1", b"second")  # the tag moves upstream
            assert await push_image(s, hub, repo, "2", b"second") == second
            before = len(cache.log_text())
            up.manifests = spoil
            answers = {}
            for ref in ("1", "2", second):
                async with s.get(f"{base}/{ref}?ns=docker.io", headers=ACCEPT) as r:
                    answers[ref] = (r.status, r.headers.get("Docker-Content-Digest"), await r.read())
            log = cache.log_text()[before:]
            stored = (cache.root / f"docker/registry/v2/repositories/docker.io/{repo}/_manifests/revisions/sha256/"
                      f"{second[7:]}").exists()
            up.manifests = None
            inspected = await asyncio.to_thread(Skopeo().inspect, f"docker://{cache.host}/docker.io/{repo}:2")
            async with s.get(f"{base}/1?ns=docker.io", headers=ACCEPT) as r:
                refreshed = r.headers["Docker-Content-Digest"]
    assert answers["1"][:2] == (200, first), answers["1"]
    for ref in ("2", second):
        status, _, body = answers[ref]
        assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE", (ref, status, body)
    assert not stored
    lines = problems(log)
    assert len(lines) == 3 and "stale" in lines[0] and "Traceback" not in log, lines
    assert inspected["Digest"] == second and refreshed == second


async def test_unreachable_upstream_logs_one_clear_line_per_request(hub: DockerRegistry, tmp_path: Path) -> None:
    """With the upstream down, each request logs one line naming the request, the attempts and the cause (no
    aiohttp internals such as ssl:default, no traceback): a 503 for what is not cached, stale for what is."""
    missing = "sha256:" + "0" * 64
    async with aiohttp.ClientSession() as s, HostileUpstream(hub.url) as up:
        await push_image(s, hub, "library/down", "1", b"down")
        port = up.url.rsplit(":", 1)[1]
        async with cache_behind(up.url, tmp_path / "cache", retries=2, tagttl="1ms") as cache:
            async with s.get(f"{cache.url}/v2/library/down/manifests/1?ns=docker.io", headers=ACCEPT) as r:
                assert r.status == 200
            await up.stop()  # its port refuses connections from now on
            before = len(cache.log_text())
            statuses = []
            for method, path in (("GET", f"blobs/{missing}"), ("HEAD", f"blobs/{missing}"), ("GET", "manifests/2"),
                                 ("GET", f"manifests/{missing}"), ("GET", "manifests/1"), ("GET", "tags/list")):
                async with s.request(method, f"{cache.url}/v2/library/down/{path}?ns=docker.io",
                                     headers=ACCEPT) as r:
                    statuses.append(r.status)
            log = cache.log_text()[before:]
    assert statuses == [503, 503, 503, 503, 200, 200]
    lines = problems(log)
    assert len(lines) == len(statuses), lines
    assert all(f"failed after 3 attempts: connection refused (127.0.0.1:{port})" in line for line in lines), lines
    assert sum("stale" in line for line in lines) == 2
    assert "ssl:default" not in log and "Traceback" not in log
