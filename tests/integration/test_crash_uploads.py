"""Crash safety of blob uploads: SIGKILL the registry mid-upload or at its commit, restart on the same root.

Everything committed before is served, no partial blob is ever visible, an acknowledged chunk survives, and the
same blob can be pushed again. docker-registry runs the same tests as the control.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest

from tests.peers.crash import Killer, assert_base_served, blob_files, open_upload, push_base, push_blob, with_query
from tests.peers.images import TestLayout
from tests.peers.registry import IMPLS, RegistryProcess, make_variant
from tests.peers.skopeo import Skopeo

MiB = 1024 * 1024
BIG = 48 * MiB
KILL_AFTER = 16 * MiB
REPO = "crash/big"


@pytest.fixture(scope="module")
def big_blob() -> tuple[bytes, str]:
    """48 MiB of random bytes and their digest."""
    data = random.Random(7).randbytes(BIG)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


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
            request = session.post(url, data=killer.body(data, KILL_AFTER), headers=headers)
        elif mode == "put-digest":
            location = await open_upload(session, reg, REPO)
            request = session.put(
                with_query(location, f"digest={digest}"), data=killer.body(data, KILL_AFTER), headers=headers
            )
        elif mode == "patch-stream":
            location = await open_upload(session, reg, REPO)
            request = session.patch(
                location, data=killer.body(data, KILL_AFTER), headers={"Content-Type": headers["Content-Type"]}
            )
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
