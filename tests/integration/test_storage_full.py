"""A full disk: the storage root on a 1 MiB tmpfs mounted by the test (CI runs as root)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from tests.integration.api_harness import digest, running

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
