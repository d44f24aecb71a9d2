"""Crash safety of manifest puts and tags: SIGKILL the registry mid-put or amid a storm of pushes, restart.

Acknowledged pushes survive and nothing half-written is listed or served. docker-registry runs the same tests
as the control where Distribution itself gives the guarantee.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.peers import api
from tests.peers.crash import Killer, assert_base_served, push_base, push_blob
from tests.peers.images import MT_LAYER_GZ, MT_MANIFEST, TestLayout, canonical_json, read_blob
from tests.peers.registry import IMPLS, VARIANTS, RegistryProcess
from tests.peers.skopeo import Skopeo


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
    some_acked = asyncio.Event()

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
            if len(acked) >= 5:
                some_acked.set()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        # Blob pushes need the config blob in crash/storm too: mount it from crash/base first.
        mount = f"{reg.url}/v2/crash/storm/blobs/uploads/?mount={config['digest']}&from=crash/base"
        async with session.post(mount) as resp:
            assert resp.status == 201, await resp.text()
        task = asyncio.create_task(storm(session))
        # Let a few pushes be acknowledged whatever the machine's load, then kill at an arbitrary moment.
        waiter = asyncio.create_task(some_acked.wait())
        await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        await asyncio.sleep(random.random() * 0.3)
        assert not task.done(), "the storm ended before the kill"
        await asyncio.to_thread(reg.kill, signal.SIGKILL)
        with pytest.raises(aiohttp.ClientError):
            await task
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
