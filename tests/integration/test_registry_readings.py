"""What k3sreg exposes for `doctor`: the free space of its storage in /metrics, and whether each upstream answers
(`GET /debug/upstreams`), both without credentials, read-only."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.registry import DockerRegistry, K3sregServer, free_port


def get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET."""
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.status, response.read()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    """A docker-registry to pull through."""
    with DockerRegistry(tmp_path_factory.mktemp("up")) as reg:
        yield reg


@pytest.fixture(scope="module")
def k3sreg(upstream: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """k3sreg with a live upstream, one where nothing listens, and an offline one."""
    config = {"upstreams": [
        {"name": "docker.io", "url": upstream.url},
        {"name": "ghcr.io", "url": f"http://127.0.0.1:{free_port()}", "timeout": "2s"},
        {"name": "quay.io", "url": "https://quay.invalid", "offline": True},
    ]}
    with K3sregServer(tmp_path_factory.mktemp("k3sreg"), config=config) as reg:
        yield reg


def test_metrics_carry_the_free_space_of_the_storage(k3sreg: K3sregServer) -> None:
    """k3sreg_storage_filesystem_free_bytes and _size_bytes are statvfs of the storage root."""
    status, body = get(f"{k3sreg.url}/metrics")
    values = {line.split()[0]: float(line.split()[1]) for line in body.decode().splitlines()
              if line.startswith("k3sreg_storage_")}
    st = os.statvfs(k3sreg.root)
    assert status == 200 and values["k3sreg_storage_filesystem_size_bytes"] == st.f_blocks * st.f_frsize
    assert 0 < values["k3sreg_storage_filesystem_free_bytes"] <= values["k3sreg_storage_filesystem_size_bytes"]


def test_debug_upstreams_says_which_upstream_answers(k3sreg: K3sregServer, upstream: DockerRegistry) -> None:
    """A live upstream is reachable, a dead one is not (with the reason), an offline one is not asked."""
    status, body = get(f"{k3sreg.url}/debug/upstreams")
    found = {u["name"]: u for u in json.loads(body)["upstreams"]}
    assert status == 200 and list(found) == ["docker.io", "ghcr.io", "quay.io"]
    assert found["docker.io"]["reachable"] is True
    assert found["ghcr.io"]["reachable"] is False and "connection refused" in found["ghcr.io"]["detail"]
    assert found["quay.io"]["offline"] is True and found["quay.io"]["reachable"] is None
    assert not any(line[1].startswith("/v2") and "quay" in line[1] for line in upstream.requests())


def test_a_registry_without_upstreams_lists_none(tmp_path: Path) -> None:
    """No upstreams: an empty list, and no space gauges with the storage in memory."""
    reg = K3sregServer(tmp_path)
    reg.config["storage"] = {"inmemory": {}}
    with reg:
        assert json.loads(get(f"{reg.url}/debug/upstreams")[1]) == {"upstreams": []}
        assert b"k3sreg_storage_filesystem_free_bytes" not in get(f"{reg.url}/metrics")[1]
