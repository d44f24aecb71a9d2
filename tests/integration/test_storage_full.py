"""A full or read-only disk: the storage root on a 1 MiB tmpfs, or on a read-only bind mount, mounted by the
test (CI runs as root; chmod does not stop root)."""

from __future__ import annotations

import errno
import http.client
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from k3sreg.config.health import HealthSettings
from k3sreg.server.health import probes
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.store import Store
from tests.integration.api_harness import digest, running
from tests.peers.registry import K3sregServer

BIG = os.urandom(2 << 20)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """tmp_path with `data` (the registry's root) on a tmpfs of 1 MiB."""
    (tmp_path / "data").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp_path / "data")], check=True)
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", str(tmp_path / "data")], check=True)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Callable[[bool], None]]]:
    """tmp_path/data bind-mounted on itself, and a switch: True makes that mount read-only, False writable."""
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "--bind", str(data), str(data)], check=True)

    def switch(on: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,bind,{'ro' if on else 'rw'}", str(data)], check=True)

    try:
        yield data, switch
    finally:
        subprocess.run(["umount", str(data)], check=True)


HEALTH = {"health": {"storagedriver": {"enabled": True, "interval": "100ms", "threshold": 0}}}


def readiness(server: K3sregServer) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/debug/health")
    answer = conn.getresponse()
    body = json.loads(answer.read())
    conn.close()
    return answer.status, body


def wait_readiness(server: K3sregServer, status: int) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while True:
        got, body = readiness(server)
        if got == status:
            return body
        assert time.monotonic() < deadline, f"/debug/health still answers {got}: {body}"
        time.sleep(0.05)


def test_readiness_fails_while_the_disk_is_full(small_disk: Path) -> None:
    """/debug/health answers 503 while the store cannot take a write (a full disk), and 200 once it can; the
    API keeps answering meanwhile."""
    with K3sregServer(small_disk / "srv", root=small_disk / "data", config=HEALTH) as server:
        wait_readiness(server, 200)
        filler = small_disk / "data" / "filler"
        with pytest.raises(OSError) as full, filler.open("wb") as f:
            f.write(BIG)
            f.flush()
        assert full.value.errno == errno.ENOSPC
        assert "full" in wait_readiness(server, 503)["storagewrite"]
        # Unready, but not down: what is stored is still served.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/v2/")
        assert conn.getresponse().status == 200
        conn.close()
        filler.unlink()
        assert wait_readiness(server, 200) == {}


def test_readiness_fails_while_the_store_is_read_only(read_only: tuple[Path, Callable[[bool], None]]) -> None:
    """/debug/health answers 503 while the store's file system is read-only, and 200 once it is writable."""
    data, switch = read_only
    with K3sregServer(data.parent / "srv", root=data, config=HEALTH) as server:
        wait_readiness(server, 200)
        switch(True)
        try:
            assert "Read-only file system" in wait_readiness(server, 503)["storagewrite"]
        finally:
            switch(False)
        assert wait_readiness(server, 200) == {}
        assert list(data.glob("docker/registry/v2/_tmp/*")) == []  # each probe removed what it wrote


async def test_read_only_mode_checks_the_store_without_writing(read_only: tuple[Path, Callable[[bool], None]]
                                                               ) -> None:
    """In read-only mode (storage.maintenance.readonly) the check lists the store: a read-only volume is fine."""
    data, switch = read_only
    store = Store(FilesystemDriver(data))
    settings = HealthSettings.model_validate({"storagedriver": {"enabled": True}})
    switch(True)
    try:
        assert [name for name, *_ in probes(settings, store, writable=False)] == ["storagedriver"]
        [(_, listing, _, _, gates), (_, writing, _, _, readiness_only)] = probes(settings, store, writable=True)
        assert await listing() is None and gates
        assert "Read-only file system" in (await writing() or "") and not readiness_only
    finally:
        switch(False)
        store.close()


def assert_storage_full(status: int, headers: Any, body: bytes) -> None:
    assert status == 507, (status, body[:200])
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"


def upload_data_sizes(root: Path) -> list[int]:
    return [p.stat().st_size for p in root.glob("docker/registry/v2/repositories/*/*/_uploads/*/data")]


def blob_dirs(root: Path) -> list[Path]:
    return list(root.glob("docker/registry/v2/blobs/sha256/*/*"))


async def test_full_disk_answers_oci_json_and_leaves_nothing(small_disk: Path) -> None:
    """A blob larger than the disk: 507 OCI JSON, no partial upload data or blob left, and later pushes work."""
    async with running(small_disk) as api:
        root = small_disk / "data"
        status, headers, body = await api.req("POST", f"/v2/full/mono/blobs/uploads/?digest={digest(BIG)}",
                                              data=BIG)
        assert_storage_full(status, headers, body)
        assert list(root.glob("docker/registry/v2/repositories/full/mono/_uploads/*")) == []

        status, headers, _ = await api.req("POST", "/v2/full/chunked/blobs/uploads/")
        location = urljoin(api.base, headers["Location"])
        status, headers, body = await api.req("PATCH", location, data=BIG)
        assert_storage_full(status, headers, body)
        assert upload_data_sizes(root) == [0]  # the session stays, as it was before the failed chunk
        status, headers, body = await api.req("PUT", f"{location}?digest={digest(BIG)}", data=BIG)
        assert_storage_full(status, headers, body)
        assert upload_data_sizes(root) == [0] and blob_dirs(root) == []

        assert await api.push_blob("full/small", b"fits") == digest(b"fits")
