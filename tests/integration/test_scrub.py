"""Scrub against real clients: bytes flipped in a cached blob and in a pushed one. Quarantined, the cached blob
is fetched again from the upstream on the next pull (docker-registry 2.8.2 as docker.io, in the session's
network namespace); the pushed one shows as missing until it is pushed again. And the background scrub of
`serve` finds a flipped byte by itself."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.peers.images import TestLayout, build_layout
from tests.peers.netns import NetNs
from tests.peers.registry import K3SREG_BIN, DockerRegistry, K3sregServer
from tests.peers.skopeo import Skopeo, ToolError


def blob_file(root: Path, digest: str) -> Path:
    return root / f"docker/registry/v2/blobs/sha256/{digest[7:9]}/{digest[7:]}/data"


def flip(path: Path) -> None:
    """Flip one byte in the middle of `path`, as a failing disk would."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def run_scrub(config: Path, *flags: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run([str(K3SREG_BIN), "scrub", "--json", *flags, str(config)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_quarantined_cached_blob_is_fetched_again_and_pushed_one_reported(
        netns: NetNs, oci_layout: TestLayout, tmp_path: Path) -> None:
    """Both flips are found; with --quarantine the cached layer comes back whole on the next pull through the
    cache, while the pushed image reports its layer missing until it is pushed again."""
    inside = Skopeo(netns)
    pushed = build_layout(tmp_path / "own", seed=7)
    cached_layer, pushed_layer = oci_layout.single.layers[0].digest, pushed.single.layers[0].digest
    with DockerRegistry(tmp_path / "hub", netns=netns) as hub:
        inside.copy(oci_layout.oci_ref(), f"docker://{hub.host}/library/demo:1")
        config = {"upstreams": [{"name": "docker.io", "url": hub.url}]}
        with K3sregServer(tmp_path / "cache", netns=netns, config=config) as cache:
            inside.copy(pushed.oci_ref(), f"docker://{cache.host}/team/app:1")
            inside.copy(f"docker://{cache.host}/docker.io/library/demo:1", f"dir:{tmp_path / 'first'}")
            assert run_scrub(cache.config_path)[0] == 0
            flip(blob_file(cache.root, cached_layer))
            flip(blob_file(cache.root, pushed_layer))
            code, report = run_scrub(cache.config_path, "--quarantine")
            assert code == 1
            assert {c["digest"] for c in report["corrupt"]} == {cached_layer, pushed_layer}  # type: ignore[index]
            assert [(m["repository"], m["blob"]) for m in report["missing_blobs"]] == [  # type: ignore[index]
                ("team/app", pushed_layer)]
            assert (cache.root / f"docker/registry/v2/_quarantine/sha256/{cached_layer[7:]}/data").is_file()
            inside.copy(f"docker://{cache.host}/docker.io/library/demo:1", f"dir:{tmp_path / 'again'}")
            assert "sha256:" + hashlib.sha256(blob_file(cache.root, cached_layer).read_bytes()).hexdigest() == \
                cached_layer
            with pytest.raises(ToolError):
                inside.copy(f"docker://{cache.host}/team/app:1", f"dir:{tmp_path / 'broken'}")
            inside.copy(pushed.oci_ref(), f"docker://{cache.host}/team/app:1")
            code, report = run_scrub(cache.config_path)
            assert (code, report["problem_count"]) == (0, 0)


def test_serve_scrubs_in_the_background(oci_layout: TestLayout, tmp_path: Path) -> None:
    """With storage.scrub, a running server finds a flipped byte by itself, logs it, quarantines the blob and
    keeps the pass's report where every worker reads it."""
    config = {"storage": {"scrub": {"interval": "1s", "rate": "64MiB", "quarantine": True}}}
    layer = oci_layout.single.layers[1].digest
    with K3sregServer(tmp_path / "srv", config=config, workers=2) as server:
        Skopeo().copy(oci_layout.oci_ref(), f"docker://{server.host}/lib/demo:1")
        flip(blob_file(server.root, layer))
        report_file = server.root / "docker/registry/v2/_gc/scrub.json"
        deadline = time.monotonic() + 60
        while not (report_file.is_file() and layer in report_file.read_text()):
            assert time.monotonic() < deadline, server.log_text()[-3000:]
            time.sleep(0.2)
        report = json.loads(report_file.read_text())
        assert report["corrupt"][0]["quarantined"] and not blob_file(server.root, layer).exists()
        assert f"scrub: blob {layer}: its bytes are sha256:" in server.log_text()
