"""Crash safety: SIGKILL the registry in the middle of an upload or a manifest put, restart it on the same root.

Everything committed before is served, nothing half-written is visible, and the same content can be pushed
again. These properties are what k3sreg promises; docker-registry runs the same tests as the control.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest

from tests.peers import api
from tests.peers.images import MT_LAYER_GZ, MT_MANIFEST, TestLayout, canonical_json, read_blob
from tests.peers.registry import IMPLS, VARIANTS, RegistryProcess, make_variant
from tests.peers.skopeo import Skopeo

MiB = 1024 * 1024
BIG = 48 * MiB
KILL_AFTER = 16 * MiB
CHUNK = 256 * 1024
REPO = "crash/big"


@pytest.fixture
def crashable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryProcess]:
    """A registry of variant ``request.param`` of its own (each test kills it), on ``tmp_path/data``."""
    variant: str = request.param
    reg = make_variant(variant, tmp_path / "reg", root=tmp_path / "data")
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def big_blob() -> tuple[bytes, str]:
    """48 MiB of random bytes and their digest."""
    data = random.Random(7).randbytes(BIG)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def disk_bytes(root: Path) -> int:
    """Total size of the files under ``root``."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def blob_files(root: Path, digest: str) -> list[Path]:
    """The committed blob file of ``digest`` in Distribution's layout, if it exists."""
    hexpart = digest.split(":", 1)[1]
    path = root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
    return [path] if path.exists() else []


class Killer:
    """Streams a body and SIGKILLs the registry once ``KILL_AFTER`` bytes are out and reached the server."""

    def __init__(self, reg: RegistryProcess) -> None:
        self.reg = reg
        self.sent_enough = asyncio.Event()
        self.killed = asyncio.Event()
        self.baseline = disk_bytes(reg.root)
        self.on_disk = 0

    async def body(self, data: bytes, kill_after: int = KILL_AFTER) -> AsyncIterator[bytes]:
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


async def assert_blob_absent_then_pushable(
    reg: RegistryProcess, data: bytes, digest: str, session: aiohttp.ClientSession
) -> None:
    """The killed blob is not visible; pushing it again succeeds and serves exactly its bytes."""
    assert blob_files(reg.root, digest) == []
    async with session.head(f"{reg.url}/v2/{REPO}/blobs/{digest}") as resp:
        assert resp.status == 404
    await push_blob(session, reg, REPO, data, digest)
    async with session.head(f"{reg.url}/v2/{REPO}/blobs/{digest}") as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == len(data)
    hasher = hashlib.sha256()
    async with session.get(f"{reg.url}/v2/{REPO}/blobs/{digest}") as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(MiB):
            hasher.update(chunk)
    assert "sha256:" + hasher.hexdigest() == digest


# Distribution 2.8 answers a POST with ?digest= by opening a session (202) without reading the body, so the
# single-request monolithic upload only runs against k3sreg, which implements it.
UPLOAD_CASES = [
    *(
        (impl, mode)
        for impl in IMPLS
        for mode in ("post-digest", "put-digest", "patch-stream", "patch-chunks")
        if (impl, mode) != ("docker-registry", "post-digest")
    ),
    ("k3sreg-w2", "put-digest"),
]


@pytest.mark.parametrize(("crashable", "mode"), UPLOAD_CASES, indirect=["crashable"])
async def test_kill_during_blob_upload(
    mode: str,
    crashable: RegistryProcess,
    big_blob: tuple[bytes, str],
    skopeo: Skopeo,
    oci_layout: TestLayout,
    tmp_path: Path,
) -> None:
    """SIGKILL mid-upload (monolithic POST/PUT, streamed or chunked PATCH): no partial blob, old data served."""
    data, digest = big_blob
    reg = crashable
    push_base(reg, skopeo, oci_layout)
    killer = Killer(reg)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        kill_task = asyncio.create_task(killer.run(expect_on_disk=KILL_AFTER // 2))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        if mode == "post-digest":
            url = f"{reg.url}/v2/{REPO}/blobs/uploads/?digest={digest}"
            request = session.post(url, data=killer.body(data), headers=headers)
        elif mode == "put-digest":
            location = await open_upload(session, reg, REPO)
            request = session.put(with_query(location, f"digest={digest}"), data=killer.body(data), headers=headers)
        elif mode == "patch-stream":
            location = await open_upload(session, reg, REPO)
            request = session.patch(location, data=killer.body(data), headers={"Content-Type": headers["Content-Type"]})
        else:
            location = await open_upload(session, reg, REPO)
            first = data[: 8 * MiB]
            chunk_headers = {"Content-Type": headers["Content-Type"], "Content-Range": f"0-{len(first) - 1}"}
            async with session.patch(location, data=first, headers=chunk_headers) as resp:
                assert resp.status == 202, await resp.text()
                location = urljoin(reg.url, resp.headers["Location"])
            rest = data[8 * MiB :]
            chunk_headers = {
                "Content-Type": headers["Content-Type"],
                "Content-Range": f"{8 * MiB}-{len(data) - 1}",
                "Content-Length": str(len(rest)),
            }
            request = session.patch(location, data=killer.body(rest, KILL_AFTER), headers=chunk_headers)
        with pytest.raises(aiohttp.ClientError):
            async with request as resp:
                await resp.read()
        await kill_task
        assert reg.proc is None
        # The upload really was cut mid-way: part of the body had reached the server's disk.
        assert killer.on_disk >= MiB, killer.on_disk
        reg.start()
        assert_base_served(reg, skopeo, oci_layout, tmp_path / "back")
        await assert_blob_absent_then_pushable(reg, data, digest, session)


@pytest.mark.parametrize("crashable", IMPLS, indirect=True)
async def test_kill_at_blob_commit(crashable: RegistryProcess, big_blob: tuple[bytes, str]) -> None:
    """SIGKILL right after the last byte of an upload: the blob is absent or whole (whole if acknowledged)."""
    data, digest = big_blob
    reg = crashable
    killer = Killer(reg)
    acknowledged = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        kill_task = asyncio.create_task(killer.run(expect_on_disk=0, max_wait=0))
        location = await open_upload(session, reg, REPO)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        try:
            url = with_query(location, f"digest={digest}")
            async with session.put(url, data=killer.body(data, len(data)), headers=headers) as resp:
                acknowledged = resp.status == 201
        except aiohttp.ClientError:
            pass
        await kill_task
        reg.start()
        async with session.head(f"{reg.url}/v2/{REPO}/blobs/{digest}") as resp:
            present = resp.status == 200
            assert resp.status in (200, 404)
        assert present or not acknowledged
        for path in blob_files(reg.root, digest):
            assert path.stat().st_size == len(data)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.split(":", 1)[1]
        if not present:
            assert blob_files(reg.root, digest) == []
        await push_blob(session, reg, REPO, data, digest)
        async with session.get(f"{reg.url}/v2/{REPO}/blobs/{digest}") as resp:
            assert resp.status == 200
            assert hashlib.sha256(await resp.read()).hexdigest() == digest.split(":", 1)[1]


@pytest.mark.parametrize("crashable", ["k3sreg"], indirect=True)
def test_interrupted_tag_write_is_invisible(crashable: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """A tag with an index link but no ``current`` link (a cut tag write) is not listed; a new push completes it."""
    # This is the state a SIGKILL in the push storm below leaves (seen there about one run in three).
    # k3sreg only: Distribution 2.8 lists such a tag and answers 404 for it.
    reg = crashable
    push_base(reg, skopeo, oci_layout)
    reg.stop()
    hexpart = oci_layout.single.digest.split(":", 1)[1]
    tag_dir = reg.root / "docker/registry/v2/repositories/crash/base/_manifests/tags/half"
    index_link = tag_dir / "index" / "sha256" / hexpart / "link"
    index_link.parent.mkdir(parents=True)
    index_link.write_text(oci_layout.single.digest)
    reg.start()
    assert sorted(api.tags(reg.url, "crash/base")) == ["1", "multi"]
    assert api.manifest(reg.url, "crash/base", "half").status == 404
    skopeo.copy(oci_layout.oci_ref(), f"docker://{reg.host}/crash/base:half")
    assert sorted(api.tags(reg.url, "crash/base")) == ["1", "half", "multi"]
    assert api.manifest(reg.url, "crash/base", "half").headers["docker-content-digest"] == oci_layout.single.digest


@pytest.mark.parametrize("crashable", IMPLS, indirect=True)
async def test_kill_during_manifest_put(
    crashable: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout, tmp_path: Path
) -> None:
    """SIGKILL while a manifest body is half received: neither the tag nor the digest appears after restart."""
    reg = crashable
    push_base(reg, skopeo, oci_layout)
    manifest = json.loads(read_blob(oci_layout.root, oci_layout.single.digest))
    manifest["annotations"] = {"k3sreg.test": "crash"}
    body = canonical_json(manifest)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    killer = Killer(reg)
    headers = {"Content-Type": MT_MANIFEST, "Content-Length": str(len(body))}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        kill_task = asyncio.create_task(killer.run(expect_on_disk=1 << 40, max_wait=0.3))
        url = f"{reg.url}/v2/crash/base/manifests/crashed"
        with pytest.raises(aiohttp.ClientError):
            async with session.put(url, data=killer.body(body, len(body) // 2), headers=headers) as resp:
                await resp.read()
        await kill_task
        reg.start()
        assert_base_served(reg, skopeo, oci_layout, tmp_path / "back")
        assert api.manifest(reg.url, "crash/base", "crashed").status == 404
        assert api.manifest(reg.url, "crash/base", digest).status == 404
        async with session.put(url, data=body, headers={"Content-Type": MT_MANIFEST}) as resp:
            assert resp.status == 201, await resp.text()
        served = api.manifest(reg.url, "crash/base", "crashed")
        assert (served.status, served.body) == (200, body)


@pytest.mark.parametrize("crashable", list(VARIANTS), indirect=True)
async def test_kill_during_push_storm(
    crashable: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout, tmp_path: Path
) -> None:
    """SIGKILL amid back-to-back pushes: acknowledged pushes survive, every listed tag is whole with its blobs."""
    # docker-registry may keep its in-flight tag listed but unresolvable (a known Distribution weakness);
    # k3sreg may not.
    reg = crashable
    push_base(reg, skopeo, oci_layout)
    config = json.loads(read_blob(oci_layout.root, oci_layout.single.digest))["config"]
    acked: dict[str, tuple[str, str]] = {}  # tag -> (manifest digest, layer digest)
    rng = random.Random(11)

    async def storm(session: aiohttp.ClientSession) -> None:
        for i in range(10_000):
            layer = rng.randbytes(64 * 1024 + i)
            layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
            await push_blob(session, reg, "crash/storm", layer, layer_digest)
            manifest = {
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": config,
                "layers": [{"mediaType": MT_LAYER_GZ, "digest": layer_digest, "size": len(layer)}],
            }
            body = canonical_json(manifest)
            async with session.put(
                f"{reg.url}/v2/crash/storm/manifests/t{i}", data=body, headers={"Content-Type": MT_MANIFEST}
            ) as resp:
                assert resp.status == 201, await resp.text()
            acked[f"t{i}"] = ("sha256:" + hashlib.sha256(body).hexdigest(), layer_digest)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        # Blob pushes need the config blob in crash/storm too: mount it from crash/base first.
        mount = f"{reg.url}/v2/crash/storm/blobs/uploads/?mount={config['digest']}&from=crash/base"
        async with session.post(mount) as resp:
            assert resp.status == 201, await resp.text()
        task = asyncio.create_task(storm(session))
        await asyncio.sleep(0.4 + random.random() * 0.4)
        assert not task.done(), "the storm ended before the kill"
        await asyncio.to_thread(reg.kill, signal.SIGKILL)
        with pytest.raises(aiohttp.ClientError):
            await task
    assert len(acked) >= 3, "too few pushes before the kill to test anything"
    reg.start()
    assert_base_served(reg, skopeo, oci_layout, tmp_path / "back")
    listed = api.tags(reg.url, "crash/storm")
    assert set(acked) <= set(listed)
    assert len(listed) <= len(acked) + 1
    for tag in listed:
        served = api.manifest(reg.url, "crash/storm", tag)
        if served.status == 404 and tag not in acked and reg.impl == "docker-registry":
            # Distribution creates the tag directory before writing its link file, so the one push in flight
            # can stay listed but unresolvable (seen about one run in three). k3sreg must not do this.
            continue
        assert served.status == 200, (tag, served.status, served.body)
        assert served.headers["docker-content-digest"] == "sha256:" + hashlib.sha256(served.body).hexdigest()
        for layer in json.loads(served.body)["layers"]:
            head = api.blob_head(reg.url, "crash/storm", layer["digest"])
            assert head.status == 200, (tag, layer["digest"])
            assert int(head.headers["content-length"]) == layer["size"]
    for path in (reg.root / "docker" / "registry" / "v2" / "blobs").rglob("data"):
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == path.parent.name, path


@pytest.mark.parametrize("impl", IMPLS)
async def test_acknowledged_chunk_survives_kill(impl: str, tmp_path: Path) -> None:
    """A chunk acknowledged with 202 survives SIGKILL: after restart the session reports it and can be resumed."""
    # A fixed http.secret lets Distribution verify the upload state it signed before the restart.
    reg = make_variant(impl, tmp_path / "reg", config={"http": {"secret": "k3sreg-tests-fixed-secret"}})
    data = random.Random(3).randbytes(4 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    octets = {"Content-Type": "application/octet-stream"}
    with reg:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            location = await open_upload(session, reg, REPO)
            first = {**octets, "Content-Range": f"0-{half - 1}"}
            async with session.patch(location, data=data[:half], headers=first) as resp:
                assert resp.status == 202, await resp.text()
                location = urljoin(reg.url, resp.headers["Location"])
            reg.kill()
            reg.start()
            async with session.get(location) as resp:
                assert resp.status == 204, await resp.text()
                assert resp.headers["Range"] == f"0-{half - 1}"
            rest = {**octets, "Content-Range": f"{half}-{len(data) - 1}"}
            async with session.patch(location, data=data[half:], headers=rest) as resp:
                assert resp.status == 202, await resp.text()
                location = urljoin(reg.url, resp.headers["Location"])
            async with session.put(with_query(location, f"digest={digest}")) as resp:
                assert resp.status == 201, await resp.text()
            async with session.get(f"{reg.url}/v2/{REPO}/blobs/{digest}") as resp:
                assert (resp.status, await resp.read()) == (200, data)
