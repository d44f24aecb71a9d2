"""The pull-through cache against real upstreams: two docker-registry 2.8.2 instances as docker.io and quay.io.

Everything (upstreams, k3sreg, containerd, clients) runs inside the session's network namespace, which has
only loopback: nothing can reach a public registry, and every hosts.toml names k3sreg as its `server`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.peers.containerd import Containerd, write_hosts_toml
from tests.peers.images import TestLayout
from tests.peers.netns import NetNs
from tests.peers.registry import DockerRegistry, K3sregServer, free_port
from tests.peers.skopeo import Skopeo


@dataclass
class Site:
    hub: DockerRegistry
    quay: DockerRegistry
    cache: K3sregServer
    netns: NetNs
    workdir: Path


def upstreams_config(hub: DockerRegistry, quay: DockerRegistry, **extra: Any) -> dict[str, Any]:
    return {"upstreams": [{"name": "docker.io", "url": hub.url, **extra}, {"name": "quay.io", "url": quay.url,
                                                                          **extra}],
            "names": ["registry.local"]}


@pytest.fixture(scope="module")
def site(netns: NetNs, oci_layout: TestLayout, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """docker.io and quay.io upstreams seeded with skopeo, and one k3sreg (two workers) in front of both."""
    work = tmp_path_factory.mktemp("proxy")
    inside = Skopeo(netns)
    with DockerRegistry(work / "hub", netns=netns) as hub, DockerRegistry(work / "quay", netns=netns) as quay:
        inside.copy(oci_layout.oci_ref(), f"docker://{hub.host}/library/demo:1")
        inside.copy(oci_layout.oci_ref(oci_layout.multi_tag), f"docker://{hub.host}/library/demo:multi", all=True)
        inside.copy(oci_layout.oci_ref(), f"docker://{quay.host}/org/app:1")
        with K3sregServer(work / "cache", netns=netns, workers=2, config=upstreams_config(hub, quay)) as cache:
            yield Site(hub, quay, cache, netns, work)


def http(netns: NetNs, method: str, url: str, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request from inside the namespace."""
    def go() -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()
    return netns.call(go)


def test_ctr_pulls_from_two_upstreams_through_one_cache(site: Site, oci_layout: TestLayout, tmp_path: Path) -> None:
    """containerd pulls docker.io and quay.io images via hosts.toml to k3sreg; content lands under ns names."""
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, "docker.io", site.cache.url)
    write_hosts_toml(hosts, "quay.io", site.cache.url)
    with Containerd(tmp_path / "ctd", site.netns) as ctd:
        ctd.pull("docker.io/library/demo:1", hosts)
        ctd.pull("quay.io/org/app:1", hosts)
        images = ctd.images()
    assert images["docker.io/library/demo:1"] == oci_layout.single.digest
    assert images["quay.io/org/app:1"] == oci_layout.single.digest
    site.cache.wait_for("HEAD", "/v2/library/demo/manifests/1?ns=docker.io")
    site.cache.wait_for("HEAD", "/v2/org/app/manifests/1?ns=quay.io")
    _, _, body = http(site.netns, "GET", f"{site.cache.url}/v2/_catalog")
    repos = json.loads(body)["repositories"]
    assert "docker.io/library/demo" in repos and "quay.io/org/app" in repos
    blobs = site.cache.root / "docker/registry/v2/blobs/sha256"
    for blob in oci_layout.single.blobs:
        assert (blobs / blob[7:9] / blob[7:] / "data").is_file()
    assert site.quay.requests(), "quay.io upstream was never asked"


def test_prefix_route_serves_clients_without_ns(site: Site, oci_layout: TestLayout) -> None:
    """skopeo reaches the cache as <k3sreg>/docker.io/library/demo and as docker.io/demo (library/ implied)."""
    inside = Skopeo(site.netns)
    for ref in ("docker.io/library/demo:1", "docker.io/demo:1"):
        assert inside.inspect(f"docker://{site.cache.host}/{ref}")["Digest"] == oci_layout.single.digest


def test_multi_arch_index_through_cache(site: Site, oci_layout: TestLayout, tmp_path: Path) -> None:
    """An index and its platform manifests are fetched and cached by digest."""
    inside = Skopeo(site.netns)
    inside.copy(f"docker://{site.cache.host}/docker.io/library/demo:multi", f"oci:{tmp_path}/out:x", all=True)
    status, headers, _ = http(site.netns, "HEAD", f"{site.cache.url}/v2/library/demo/manifests/"
                              f"{oci_layout.index.digest}?ns=docker.io")
    assert status == 200 and headers["Docker-Content-Digest"] == oci_layout.index.digest


def test_unknown_ns_is_name_unknown(site: Site) -> None:
    """An ns with no upstream answers 404 NAME_UNKNOWN at once."""
    status, _, body = http(site.netns, "GET", f"{site.cache.url}/v2/x/y/manifests/1?ns=ghcr.io")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"


def test_push_into_upstream_namespace_refused(site: Site) -> None:
    """Pushing under docker.io/ is refused with UNSUPPORTED; local names on the same endpoint take pushes."""
    status, _, body = http(site.netns, "POST", f"{site.cache.url}/v2/docker.io/library/x/blobs/uploads/", b"")
    assert status == 405 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    status, _, _ = http(site.netns, "POST", f"{site.cache.url}/v2/library/x/blobs/uploads/?ns=registry.local", b"")
    assert status == 202


def test_local_push_and_pull_on_same_endpoint(site: Site, oci_layout: TestLayout) -> None:
    """A CI push to a local name works beside the cache, and pulls back by digest."""
    inside = Skopeo(site.netns)
    inside.copy(oci_layout.oci_ref(), f"docker://{site.cache.host}/team/app:1")
    assert inside.inspect(f"docker://{site.cache.host}/team/app:1")["Digest"] == oci_layout.single.digest


def test_tags_list_asks_the_upstream(site: Site, oci_layout: TestLayout) -> None:
    """tags/list of an upstream repository lists the upstream's tags, also those never pulled through the cache."""
    inside = Skopeo(site.netns)
    inside.copy(oci_layout.oci_ref(), f"docker://{site.quay.host}/org/listed:never-pulled")
    inside.copy(oci_layout.oci_ref(), f"docker://{site.quay.host}/org/listed:2")
    assert inside.list_tags(f"docker://{site.cache.host}/quay.io/org/listed") == ["2", "never-pulled"]
    status, _, body = http(site.netns, "GET", f"{site.cache.url}/v2/org/listed/tags/list?ns=quay.io&n=1")
    assert status == 200 and json.loads(body) == {"name": "org/listed", "tags": ["2"]}
    status, _, body = http(site.netns, "GET", f"{site.cache.url}/v2/org/missing/tags/list?ns=quay.io")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"


def push_blob(netns: NetNs, registry: DockerRegistry, repo: str, data: bytes) -> str:
    """Push with POST then PUT (docker-registry 2.8 resets a monolithic POST with a body)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = http(netns, "POST", f"{registry.url}/v2/{repo}/blobs/uploads/", b"")
    assert status == 202
    location = headers["Location"]
    if location.startswith("/"):
        location = registry.url + location
    sep = "&" if "?" in location else "?"
    status, _, _ = http(netns, "PUT", f"{location}{sep}digest={digest}", data,
                        {"Content-Type": "application/octet-stream"})
    assert status == 201
    return digest


async def _concurrent_get(url: str, n: int) -> list[bytes]:
    async with aiohttp.ClientSession() as s:
        async def one() -> bytes:
            async with s.get(url) as r:
                assert r.status == 200, r.status
                return await r.read()
        return await asyncio.gather(*(one() for _ in range(n)))


@pytest.mark.parametrize("clients", [8, 32])
def test_concurrent_cold_requests_fetch_once(site: Site, clients: int) -> None:
    """N clients asking at once for one uncached blob cause exactly one upstream GET; all get the right bytes."""
    data = random.Random(clients).randbytes(6 << 20)
    repo = f"library/herd{clients}"
    digest = push_blob(site.netns, site.hub, repo, data)
    url = f"{site.cache.url}/v2/{repo}/blobs/{digest}?ns=docker.io"
    bodies = site.netns.call(asyncio.run, _concurrent_get(url, clients))
    assert all(hashlib.sha256(b).hexdigest() == digest[7:] for b in bodies) and len(bodies) == clients
    gets = [p for m, p in site.hub.requests() if m == "GET" and p.startswith(f"/v2/{repo}/blobs/{digest}")]
    assert len(gets) == 1, gets


class Relay:
    """A TCP relay in front of an upstream: cuts its first connection after `cut_after` answer bytes, or paces
    every answer to about `rate` bytes per second. `progress` records (time, answer bytes relayed so far)."""

    def __init__(self, target_port: int, cut_after: int | None = None, rate: int | None = None):
        self.target_port, self.cut_after, self.rate = target_port, cut_after, rate
        self.delay = 0.0  # seconds to hold every answer back (a slow upstream)
        self.status: int | None = None  # answer every request with this status instead (a failing upstream)
        self.status_headers = ""
        self.refused = 0  # requests answered with `status`
        self.strip_range = False  # drop Range headers: an upstream that always sends the whole blob
        self.requests: list[bytes] = []  # the first bytes of every relayed connection's request
        self._open: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        self.progress: list[tuple[float, int]] = []
        self.server: asyncio.Server | None = None

    def fail_with(self, status: int, headers: dict[str, str] | None = None) -> None:
        """From now on answer `status` (with `headers`); pooled connections to the real upstream are dropped."""
        self.status = status
        self.status_headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        for writer in self._open:
            writer.close()

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.status is not None:
            while await reader.readuntil(b"\r\n\r\n"):
                self.refused += 1
                writer.write(f"HTTP/1.1 {self.status} Failing\r\n{self.status_headers}Content-Length: 0\r\n\r\n"
                             .encode())
                await writer.drain()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._open.add(writer)
        limit = None
        if self.cut_after is not None and not self.cuts:
            limit, self.cuts = self.cut_after, 1
        await asyncio.gather(self._pipe(reader, up_w, None, False), self._pipe(up_r, writer, limit, True))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int | None,
                    answer: bool) -> None:
        sent = 0
        try:
            while data := await src.read(65536):
                if not answer:
                    if not sent:
                        self.requests.append(data)
                    if self.strip_range:
                        data = re.sub(rb"(?im)^range: [^\r\n]*\r\n", b"", data)
                if answer and self.delay:
                    await asyncio.sleep(self.delay)
                if limit is not None and sent + len(data) > limit:
                    dst.write(data[: limit - sent])
                    await dst.drain()
                    return
                sent += len(data) if answer else 1
                dst.write(data)
                await dst.drain()
                if answer:
                    self.progress.append((asyncio.get_running_loop().time(), sent))
                    if self.rate:
                        await asyncio.sleep(len(data) / self.rate)
        except ConnectionError:
            pass
        finally:
            dst.close()


def test_cut_upstream_caches_nothing_and_retry_succeeds(site: Site, tmp_path: Path) -> None:
    """An upstream connection cut half-way fails the client, caches nothing; the next request succeeds."""
    data = random.Random(7).randbytes(4 << 20)
    digest = push_blob(site.netns, site.hub, "library/cut", data)
    relay = Relay(site.hub.port, cut_after=1 << 20)

    async def scenario() -> tuple[bool, bool, bytes]:
        async with relayed_cache(relay, tmp_path) as cache:
            url = f"{cache.url}/v2/library/cut/blobs/{digest}?ns=docker.io"
            first_failed = False
            async with aiohttp.ClientSession() as s:
                try:
                    async with s.get(url) as r:
                        body = await r.read()
                        first_failed = r.status != 200 or hashlib.sha256(body).hexdigest() != digest[7:]
                except aiohttp.ClientError:
                    first_failed = True
                cached_after_cut = blob_file(cache, digest).exists()
                async with s.get(url) as r:
                    assert r.status == 200
                    return first_failed, cached_after_cut, await r.read()

    first_failed, cached_after_cut, second = site.netns.call(asyncio.run, scenario())
    assert relay.cuts == 1 and first_failed and not cached_after_cut
    assert hashlib.sha256(second).hexdigest() == digest[7:]


@pytest.mark.parametrize("upstream_ranges", [True, False], ids=["range-206", "no-range-200"])
def test_cut_upstream_is_resumed_within_the_retries(site: Site, tmp_path: Path, upstream_ranges: bool) -> None:
    """With a retry left, a fill cut half-way continues where it stopped (Range, or skipping what an upstream
    without ranges sends again): the client gets the whole blob from its first request."""
    data = random.Random(8).randbytes(4 << 20)
    digest = push_blob(site.netns, site.hub, f"library/resumed{int(upstream_ranges)}", data)
    # Paced, so that k3sreg has taken in (and kept) most of the first MiB when the cut comes.
    relay = Relay(site.hub.port, cut_after=(1 << 20) + 12345, rate=4 << 20)
    relay.strip_range = not upstream_ranges

    async def scenario() -> tuple[int, bytes, bool, str]:
        async with relayed_cache(relay, tmp_path, retries=1) as cache:
            url = f"{cache.url}/v2/library/resumed{int(upstream_ranges)}/blobs/{digest}?ns=docker.io"
            async with aiohttp.ClientSession() as s, s.get(url) as r:
                body = await r.read()
            # The body can be complete a moment before the fill has committed the blob.
            cached = await asyncio.to_thread(eventually, blob_file(cache, digest).exists)
            return r.status, body, cached, cache.log_text()

    status, body, cached, log = site.netns.call(asyncio.run, scenario())
    assert status == 200 and hashlib.sha256(body).hexdigest() == digest[7:] and cached
    assert relay.cuts == 1 and "resuming" in log
    blob_requests = [r for r in relay.requests if f"/blobs/{digest}".encode() in r]
    assert len(blob_requests) == 2
    resumed_at = re.search(rb"(?i)\r\nrange: bytes=(\d+)-\r\n", blob_requests[1])
    assert resumed_at is not None and 0 < int(resumed_at.group(1)) <= (1 << 20) + 12345


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether `check` becomes true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def blob_file(cache: K3sregServer, digest: str) -> Path:
    return cache.root / f"docker/registry/v2/blobs/sha256/{digest[7:9]}/{digest[7:]}/data"


@asynccontextmanager
async def cache_behind(upstream_url: str, workdir: Path, workers: int = 1, **upstream: Any
                       ) -> AsyncIterator[K3sregServer]:
    """A k3sreg (in the current namespace) whose docker.io upstream is `upstream_url` (no retries unless given)."""
    cfg = {"upstreams": [{"name": "docker.io", "url": upstream_url, "retries": 0, **upstream}]}
    cache = K3sregServer(workdir, config=cfg, workers=workers)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, cache.start)
    try:
        yield cache
    finally:
        await loop.run_in_executor(None, cache.stop)


@asynccontextmanager
async def relayed_cache(relay: Relay, tmp_path: Path, **upstream: Any) -> AsyncIterator[K3sregServer]:
    """A k3sreg (in the current namespace) whose docker.io upstream is reached through `relay`."""
    port = free_port()
    await relay.start(port)
    try:
        async with cache_behind(f"http://127.0.0.1:{port}", tmp_path / "cache", **upstream) as cache:
            yield cache
    finally:
        relay.close()


def test_first_bytes_arrive_before_the_fill_ends_and_survive_disconnect(site: Site, tmp_path: Path) -> None:
    """A slow upstream: clients get bytes before the download ends; a client that leaves does not stop the fill."""
    data = random.Random(9).randbytes(3 << 20)
    digest = push_blob(site.netns, site.hub, "library/slow", data)
    relay = Relay(site.hub.port, rate=2 << 20)  # about 1.5 s for the blob

    async def scenario() -> tuple[float, list[tuple[float, int]], bool]:
        async with relayed_cache(relay, tmp_path) as cache:
            url = f"{cache.url}/v2/library/slow/blobs/{digest}?ns=docker.io"
            async with aiohttp.ClientSession() as s, s.get(url) as r:
                assert r.status == 200 and r.headers["Content-Length"] == str(len(data))
                await r.content.readany()
                first_byte = asyncio.get_running_loop().time()
            # The only client has gone; the fill must still complete and land in the cache.
            for _ in range(100):
                if blob_file(cache, digest).exists():
                    break
                await asyncio.sleep(0.1)
            return first_byte, list(relay.progress), blob_file(cache, digest).exists()

    first_byte, progress, cached = site.netns.call(asyncio.run, scenario())
    upstream_done = min(t for t, n in progress if n >= len(data))
    assert first_byte < upstream_done, "the first byte came only after the upstream transfer ended"
    assert cached


def test_cache_serves_when_upstreams_are_down(netns: NetNs, oci_layout: TestLayout, tmp_path: Path) -> None:
    """With the upstream stopped, a cached image still pulls by tag (served stale) and by digest."""
    inside = Skopeo(netns)
    with DockerRegistry(tmp_path / "hub", netns=netns) as hub:
        inside.copy(oci_layout.oci_ref(), f"docker://{hub.host}/library/demo:1")
        cfg = {"upstreams": [{"name": "docker.io", "url": hub.url, "tagttl": "1ms", "timeout": "2s"}]}
        cache = K3sregServer(tmp_path / "cache", netns=netns, config=cfg).start()
        try:
            hosts = tmp_path / "certs.d"
            write_hosts_toml(hosts, "docker.io", cache.url)
            with Containerd(tmp_path / "ctd1", netns) as ctd:
                ctd.pull("docker.io/library/demo:1", hosts)
            hub.stop()
            with Containerd(tmp_path / "ctd2", netns) as ctd:
                ctd.pull("docker.io/library/demo:1", hosts)
                ctd.pull(f"docker.io/library/demo@{oci_layout.single.digest}", hosts)
                assert ctd.images()["docker.io/library/demo:1"] == oci_layout.single.digest
            assert "stale" in cache.log_text()
            # The tag list falls back to what is cached.
            assert inside.list_tags(f"docker://{cache.host}/docker.io/library/demo") == ["1"]
            assert "tags of library/demo served stale" in cache.log_text()
        finally:
            cache.stop()
    assert os.path.isdir(tmp_path)


def test_metrics_count_per_upstream(site: Site) -> None:
    """/metrics exposes requests, hits, misses and bytes per upstream, summed over the two workers."""
    status, _, body = http(site.netns, "GET", f"{site.cache.url}/metrics")
    text = body.decode()
    assert status == 200
    for name in ("k3sreg_proxy_requests_total", "k3sreg_proxy_hits_total", "k3sreg_proxy_misses_total",
                 "k3sreg_proxy_served_bytes_total", "k3sreg_proxy_fetched_bytes_total"):
        assert name in text
    fetched = [line for line in text.splitlines()
               if line.startswith('k3sreg_proxy_fetched_bytes_total{upstream="docker.io"}')]
    assert fetched and float(fetched[0].split()[-1]) > 0


def tar_layer(name: str, content: bytes) -> bytes:
    """An uncompressed tar holding one file: a layer containerd can unpack (its digest is its diff_id)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(content), 1700000000
        tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def push_image(netns: NetNs, registry: DockerRegistry, repo: str, tag: str, layers: list[bytes]) -> str:
    """Push config, layers and an OCI manifest straight to a registry; returns the manifest digest."""
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {}, "tag": tag}).encode()
    cfg = push_blob(netns, registry, repo, config)
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": push_blob(netns, registry, repo, x),
              "size": len(x)} for x in layers]
    doc = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg,
                                 "size": len(config)}, "layers": descs}).encode()
    status, headers, _ = http(netns, "PUT", f"{registry.url}/v2/{repo}/manifests/{tag}", doc,
                              {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201
    return headers["Docker-Content-Digest"]


def test_eviction_keeps_images_sharing_a_layer(netns: NetNs, tmp_path: Path) -> None:
    """An image nobody pulls is evicted after ttl; another that shares its layer still pulls with upstream down."""
    shared = tar_layer("shared.bin", random.Random(1).randbytes(64 << 10))
    with DockerRegistry(tmp_path / "hub", netns=netns) as hub:
        old = push_image(netns, hub, "library/old", "1", [shared, tar_layer("old", b"old-only")])
        push_image(netns, hub, "library/kept", "1", [shared, tar_layer("kept", b"kept-only")])
        cfg = {"upstreams": [{"name": "docker.io", "url": hub.url, "ttl": "3s", "tagttl": "1h"}]}
        with K3sregServer(tmp_path / "cache", netns=netns, config=cfg) as cache:
            hosts = tmp_path / "certs.d"
            write_hosts_toml(hosts, "docker.io", cache.url)
            with Containerd(tmp_path / "ctd1", netns) as ctd:
                ctd.pull("docker.io/library/old:1", hosts, platform="linux/amd64")
                ctd.pull("docker.io/library/kept:1", hosts, platform="linux/amd64")
            revision = cache.root / f"docker/registry/v2/repositories/docker.io/library/old/_manifests/revisions/" \
                                    f"sha256/{old[7:]}"
            assert revision.is_dir()
            for _ in range(40):  # keep pulling one image while the other ages past its ttl
                status, _, _ = http(netns, "GET", f"{cache.url}/v2/library/kept/manifests/1?ns=docker.io",
                                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
                assert status == 200
                if not revision.exists():
                    break
                netns.call(__import__("time").sleep, 0.25)
            assert not revision.exists(), "the unused image was not evicted"
            hub.stop()
            with Containerd(tmp_path / "ctd2", netns) as ctd:
                ctd.pull("docker.io/library/kept:1", hosts, platform="linux/amd64")
            shared_file = cache.root / "docker/registry/v2/blobs/sha256" / \
                hashlib.sha256(shared).hexdigest()[:2] / hashlib.sha256(shared).hexdigest() / "data"
            assert shared_file.is_file()


MANIFEST_ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def test_tag_revalidated_after_tagttl(netns: NetNs, tmp_path: Path) -> None:
    """A cached tag is trusted for tagttl; after it, a moved upstream tag is noticed (HEAD) and fetched."""
    with DockerRegistry(tmp_path / "hub", netns=netns) as hub:
        first = push_image(netns, hub, "library/moving", "1", [tar_layer("a", b"one")])
        cfg = {"upstreams": [{"name": "docker.io", "url": hub.url, "tagttl": "1s"}]}
        with K3sregServer(tmp_path / "cache", netns=netns, config=cfg) as cache:
            url = f"{cache.url}/v2/library/moving/manifests/1?ns=docker.io"
            assert http(netns, "GET", url, headers=MANIFEST_ACCEPT)[1]["Docker-Content-Digest"] == first
            second = push_image(netns, hub, "library/moving", "1", [tar_layer("b", b"two")])
            assert http(netns, "GET", url, headers=MANIFEST_ACCEPT)[1]["Docker-Content-Digest"] == first
            netns.call(__import__("time").sleep, 1.2)
            assert http(netns, "GET", url, headers=MANIFEST_ACCEPT)[1]["Docker-Content-Digest"] == second
            heads = [p for m, p in hub.requests() if m == "HEAD" and "/manifests/1" in p]
            assert len(heads) == 1, heads
            assert "hit" in cache.log_text() and "miss" in cache.log_text()


def test_offline_upstream_is_never_contacted(netns: NetNs, tmp_path: Path) -> None:
    """With offline: true, cached content is served and nothing else; the upstream sees no request."""
    with DockerRegistry(tmp_path / "hub", netns=netns) as hub:
        push_image(netns, hub, "library/x", "1", [tar_layer("a", b"x")])
        before = len(hub.requests())
        cfg = {"upstreams": [{"name": "docker.io", "url": hub.url, "offline": True}]}
        with K3sregServer(tmp_path / "cache", netns=netns, config=cfg) as cache:
            status, _, body = http(netns, "GET", f"{cache.url}/v2/library/x/manifests/1?ns=docker.io",
                                   headers=MANIFEST_ACCEPT)
            assert status == 404 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert len(hub.requests()) == before


def test_distribution_proxy_section_serves_requests_without_ns(netns: NetNs, oci_layout: TestLayout,
                                                              tmp_path: Path) -> None:
    """registry:2's `proxy: remoteurl:` alone: pulls without ns go upstream, cached under the plain name."""
    inside = Skopeo(netns)
    with DockerRegistry(tmp_path / "hub", netns=netns) as hub:
        inside.copy(oci_layout.oci_ref(), f"docker://{hub.host}/library/demo:1")
        with K3sregServer(tmp_path / "cache", netns=netns, config={"proxy": {"remoteurl": hub.url}}) as cache:
            assert inside.inspect(f"docker://{cache.host}/library/demo:1")["Digest"] == oci_layout.single.digest
            inside.copy(f"docker://{cache.host}/library/demo:1", f"oci:{tmp_path}/out:1")
            assert (cache.root / "docker/registry/v2/repositories/library/demo/_manifests").is_dir()
            # Pushes to plain names still work on the same endpoint (registry:2 would refuse them).
            inside.copy(oci_layout.oci_ref(), f"docker://{cache.host}/team/app:1")


def test_proxy_section_with_a_mirror_takes_containerd_ns(netns: NetNs, oci_layout: TestLayout,
                                                         tmp_path: Path) -> None:
    """`proxy:` whose remoteurl is not Docker Hub (a docker-registry mirror): containerd's ?ns=docker.io goes to
    it, as registry:2 ignores ns; an ns naming this registry stays local; the start-up line says so."""
    inside = Skopeo(netns)
    with DockerRegistry(tmp_path / "mirror", netns=netns) as mirror:
        inside.copy(oci_layout.oci_ref(), f"docker://{mirror.host}/library/demo:1")
        inside.copy(oci_layout.oci_ref(), f"docker://{mirror.host}/library/other:1")
        cfg = {"proxy": {"remoteurl": mirror.url}, "names": ["registry.local"]}
        with K3sregServer(tmp_path / "cache", netns=netns, config=cfg) as cache:
            hosts = tmp_path / "certs.d"
            write_hosts_toml(hosts, "docker.io", cache.url)
            with Containerd(tmp_path / "ctd", netns) as ctd:
                ctd.pull("docker.io/library/demo:1", hosts)
                assert ctd.images()["docker.io/library/demo:1"] == oci_layout.single.digest
            cache.wait_for("HEAD", "/v2/library/demo/manifests/1?ns=docker.io")
            asked = len(mirror.requests())
            other = f"{cache.url}/v2/library/other/manifests/1"
            assert http(netns, "GET", f"{other}?ns=registry.local", headers=MANIFEST_ACCEPT)[0] == 404
            assert len(mirror.requests()) == asked
            assert http(netns, "GET", f"{other}?ns=ghcr.io", headers=MANIFEST_ACCEPT)[0] == 200
            assert f"upstream {mirror.host}: {mirror.url} (direct; proxy: also every request without ns or whose " \
                   "ns no other upstream claims)" in cache.log_text()


def test_token_protected_upstream_through_cache(oci_layout: TestLayout, tmp_path: Path) -> None:
    """A docker-registry with `auth: token` as upstream: k3sreg runs the Bearer flow with its credentials."""
    from tests.peers.token_issuer import TokenIssuer

    with TokenIssuer(tmp_path / "issuer", users={"puller": "pw"}) as issuer:
        with DockerRegistry(tmp_path / "plain") as plain:
            Skopeo().copy(oci_layout.oci_ref(), f"docker://{plain.host}/library/demo:1")
            plain.stop()
            # The same data, now behind token auth.
            with DockerRegistry(tmp_path / "hub", root=plain.root, config={"auth": issuer.registry_auth()}) as hub:
                cfg = {"upstreams": [{"name": "docker.io", "url": hub.url, "username": "puller", "password": "pw"}]}
                with K3sregServer(tmp_path / "cache", config=cfg) as cache:
                    out = Skopeo().inspect(f"docker://{cache.host}/docker.io/library/demo:1")
                    assert out["Digest"] == oci_layout.single.digest
                    Skopeo().copy(f"docker://{cache.host}/docker.io/library/demo:1", f"oci:{tmp_path}/out:1")
                statuses = [m for m, _ in hub.requests()]
                assert statuses, "the upstream was never asked"
        users = [user for user, _ in issuer.requests]
        assert users and all(u == "puller" for u in users)
        # Tokens are cached: far fewer token requests than upstream requests.
        assert len(issuer.requests) < len(statuses)


@pytest.mark.parametrize("failure", ["slow", "503"])
def test_failing_upstream_serves_cached_tag(site: Site, tmp_path: Path, failure: str) -> None:
    """A tag re-check that is too slow (past tagtimeout) or answers 5xx serves the cached tag, logged stale."""
    digest = push_image(site.netns, site.hub, f"library/sluggish{failure}", "1", [tar_layer("s", b"slow")])
    relay = Relay(site.hub.port)

    async def scenario() -> tuple[str, float, str]:
        async with relayed_cache(relay, tmp_path, tagttl="1ms", tagtimeout="300ms", timeout="10s") as cache:
            url = f"{cache.url}/v2/library/sluggish{failure}/manifests/1?ns=docker.io"
            async with aiohttp.ClientSession(headers=MANIFEST_ACCEPT) as s:
                async with s.get(url) as r:
                    assert r.status == 200
                if failure == "slow":
                    relay.delay = 5.0
                else:
                    relay.fail_with(503)
                loop = asyncio.get_running_loop()
                started = loop.time()
                async with s.get(url) as r:
                    assert r.status == 200
                    served = r.headers["Docker-Content-Digest"]
                return served, loop.time() - started, cache.log_text()

    served, took, log = site.netns.call(asyncio.run, scenario())
    assert served == digest and took < 4.0 and "stale" in log


def test_rate_limited_upstream_is_left_alone_for_retry_after(site: Site, tmp_path: Path) -> None:
    """After a 429 with Retry-After: cached tags are served stale, misses answer 429 with Retry-After at once,
    and the upstream is not asked again meanwhile."""
    digest = push_image(site.netns, site.hub, "library/limited", "1", [tar_layer("l", b"limited")])
    relay = Relay(site.hub.port)

    async def scenario() -> tuple[list[int], str, str, int, str]:
        async with relayed_cache(relay, tmp_path, tagttl="1ms") as cache:
            base = f"{cache.url}/v2/library/limited/manifests"
            async with aiohttp.ClientSession(headers=MANIFEST_ACCEPT) as s:
                async with s.get(f"{base}/1?ns=docker.io") as r:
                    assert r.status == 200
                relay.fail_with(429, {"Retry-After": "120"})
                statuses = []
                async with s.get(f"{base}/1?ns=docker.io") as r:  # the re-check meets the 429: stale
                    statuses.append(r.status)
                    served = r.headers["Docker-Content-Digest"]
                asked = relay.refused
                async with s.get(f"{base}/2?ns=docker.io") as r:  # a miss while the upstream rests
                    statuses.append(r.status)
                    retry_after = r.headers.get("Retry-After", "")
                    body = await r.text()
                async with s.get(f"{base}/1?ns=docker.io") as r:
                    statuses.append(r.status)
                return statuses, served, retry_after, relay.refused - asked, body

    statuses, served, retry_after, asked_again, body = site.netns.call(asyncio.run, scenario())
    assert statuses == [200, 429, 200] and served == digest
    assert "TOOMANYREQUESTS" in body and 110 <= int(retry_after) <= 120
    assert asked_again == 0
