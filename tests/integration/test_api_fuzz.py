"""Random requests never get a 500: every answer is a success or an OCI JSON error, and the log has no traceback.

Two real ``k3sreg serve`` processes are fuzzed: a plain registry, and one with upstreams (a docker-registry 2.8.2
as ``docker.io``, and ``down.example`` on a closed port), so that ``ns`` routing, path prefixes and the cache
paths are reached too. The request mix is seeded (``K3SREG_FUZZ_SEED`` picks another sequence).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from k3sreg import errors
from tests.integration.fuzz_requests import OCI_INDEX, OCI_MANIFEST, FuzzRequest, Known, RequestFuzzer
from tests.peers import api
from tests.peers.registry import DockerRegistry, K3sregServer, free_port

SEED = int(os.environ.get("K3SREG_FUZZ_SEED", "20261203"))
REQUESTS = 5000
CONCURRENCY = 8
ROUNDS = 10
# Every code the server may send: the spec's and the ones errors.py adds (UNKNOWN for a bug, RANGE_INVALID...).
CODES = {cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.RegistryError)}


def _push(base: str, repo: str, data: bytes) -> str:
    """Push a blob the way docker-registry supports (POST, then PUT with the bytes)."""
    location = api.request("POST", f"{base}/v2/{repo}/blobs/uploads/").headers["location"]
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    done = api.request("PUT", f"{location}{'&' if '?' in location else '?'}digest={d}", body=data)
    assert done.status == 201, done
    return d


def seed_registry(base: str, repo: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """An image (tag 1) and an index over it (tag multi) in `repo`: blob and image descriptors, and every digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = b"fuzz layer " * 100
    blobs = [{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _push(base, repo, config),
              "size": len(config)},
             {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _push(base, repo, layer),
              "size": len(layer)}]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": blobs[0],
                           "layers": blobs[1:]}).encode()
    put = api.request("PUT", f"{base}/v2/{repo}/manifests/1", body=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert put.status == 201, put
    images = [{"mediaType": OCI_MANIFEST, "digest": put.headers["docker-content-digest"], "size": len(manifest)}]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        dict(images[0], platform={"architecture": "amd64", "os": "linux"})]}).encode()
    put = api.request("PUT", f"{base}/v2/{repo}/manifests/multi", body=index, headers={"Content-Type": OCI_INDEX})
    assert put.status == 201, put
    return blobs, images, [b["digest"] for b in blobs + images] + [put.headers["docker-content-digest"]]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DockerRegistry, list[str]]]:
    """A docker-registry holding library/fuzz (tags 1 and multi)."""
    with DockerRegistry(tmp_path_factory.mktemp("fuzz-upstream")) as hub:
        yield hub, seed_registry(hub.url, "library/fuzz")[2]


@pytest.fixture(scope="module", params=["plain", "upstreams"])
def target(request: pytest.FixtureRequest, upstream: tuple[DockerRegistry, list[str]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[K3sregServer, Known]]:
    """A k3sreg seeded with fuzz/app, with or without upstreams, and what it holds."""
    hub, upstream_digests = upstream
    config: dict[str, object] = {}
    proxied: list[str] = []
    if request.param == "upstreams":
        config = {"upstreams": [{"name": "docker.io", "url": hub.url},
                                {"name": "down.example", "url": f"http://127.0.0.1:{free_port()}",
                                 "retries": 0, "timeout": "2s"}]}
        proxied = ["docker.io/library/fuzz", "docker.io/fuzz", "library/fuzz", "down.example/x/y"]
    with K3sregServer(tmp_path_factory.mktemp(f"fuzz-{request.param}"), config=config) as reg:
        blobs, images, digests = seed_registry(reg.url, "fuzz/app")
        uploads = [api.request("POST", f"{reg.url}/v2/fuzz/app/blobs/uploads/").headers["docker-upload-uuid"]
                   for _ in range(20)]
        yield reg, Known(["fuzz/app", "fuzz/other"], digests + upstream_digests, ["1", "multi"], blobs, images,
                         uploads, proxied)


def problem(req: FuzzRequest, status: int, headers: dict[str, str], body: bytes, proxied: bool) -> str | None:
    """What is wrong with this answer, or None."""
    if status == 500 or (status >= 500 and not (proxied and status == 503)):
        return f"status {status}"
    if status < 400 or req.method == "HEAD":
        return None
    if headers.get("Content-Type", "").split(";")[0] != "application/json":
        return f"status {status} with Content-Type {headers.get('Content-Type')!r}"
    try:
        doc = json.loads(body)
        codes = [e["code"] for e in doc["errors"]]
    except (ValueError, KeyError, TypeError):
        return f"status {status} with a body that is not OCI JSON"
    if not codes or not set(codes) <= CODES:
        return f"status {status} with codes {codes}"
    if status == 503 and codes != ["UNAVAILABLE"]:
        return f"503 with codes {codes}"
    return None


async def fuzz(base: str, known: Known, proxied: bool) -> list[str]:
    """Send REQUESTS random requests, CONCURRENCY at a time, in rounds that each start from the seeded content
    (the requests delete some of it); a list of what went wrong."""
    gen = RequestFuzzer(random.Random(SEED), known)
    found: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), auto_decompress=False,
                                     skip_auto_headers=("Content-Type",)) as session:
        async def worker(queue: list[FuzzRequest]) -> None:
            while queue:
                req = queue.pop()
                body = b""
                try:
                    async with session.request(req.method, URL(base + req.target, encoded=True), data=req.body,
                                               headers=req.headers, allow_redirects=False) as resp:
                        body = await resp.read()
                        wrong = problem(req, resp.status, dict(resp.headers), body, proxied)
                except (aiohttp.ClientError, TimeoutError) as e:
                    wrong = f"no answer ({type(e).__name__}: {e})"
                if wrong:
                    found.append(f"{req.method} {req.target[:160]} {req.headers}: {wrong}: {body[:200]!r}")

        for _ in range(ROUNDS):
            await asyncio.to_thread(seed_registry, base, known.names[0])
            queue = [gen.request() for _ in range(REQUESTS // ROUNDS)]
            await asyncio.gather(*(worker(queue) for _ in range(CONCURRENCY)))
    return found


async def test_random_requests_get_no_500_and_oci_errors(target: tuple[K3sregServer, Known]) -> None:
    """Thousands of random requests: no 500 (a 503 only as UNAVAILABLE from a down upstream), every error
    OCI JSON, no traceback in the log."""
    reg, known = target
    found = await fuzz(reg.url, known, bool(known.proxied))
    assert not found, f"{len(found)} bad answers (seed {SEED}):\n" + "\n".join(found[:25])
    log = reg.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
    assert api.request("GET", f"{reg.url}/v2/").status == 200
