"""Names that storage cannot hold or that point out of its root get an OCI error, never a 500 or a way out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.integration.api_harness import digest, running

BAD_IDS = ["a%00b", "%00", "%2e%2e", "x" * 300]


async def raw(port: int, method: str, target: str) -> tuple[int, bytes]:
    """Send the request line exactly as given (no client-side normalisation); return (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("uuid", BAD_IDS, ids=["nul-inside", "nul", "dotdot", "300-chars"])
async def test_impossible_upload_ids_are_unknown(tmp_path: Path, uuid: str) -> None:
    """Upload ids with NUL bytes, '..' or 300 characters answer a 4xx OCI error on every session method."""
    async with running(tmp_path) as api:
        port = int(api.base.rsplit(":", 1)[1])
        status, _, _ = await api.req("POST", "/v2/r/blobs/uploads/")  # r/_uploads/ exists: the id is looked up
        assert status == 202
        for method, query in (("GET", ""), ("PATCH", ""), ("PUT", f"?digest={digest(b'')}"), ("DELETE", "")):
            status, body = await raw(port, method, f"/v2/r/blobs/uploads/{uuid}{query}")
            assert status in (400, 404), (method, status, body[:300])
            assert json.loads(body)["errors"][0]["code"] in ("BLOB_UPLOAD_UNKNOWN", "NAME_INVALID")


async def test_mount_from_outside_the_root_is_refused(tmp_path: Path) -> None:
    """`from=../../../../../canary` cannot mount from a link file planted outside the storage root."""
    async with running(tmp_path) as api:
        d = await api.push_blob("owner/app", b"secret layer")
        planted = tmp_path / "canary" / "_layers" / "sha256" / d[7:] / "link"
        planted.parent.mkdir(parents=True)
        planted.write_text(d)
        status, _, body = await api.req("POST", f"/v2/thief/app/blobs/uploads/?mount={d}&from=../../../../../canary")
        # As Distribution: a `from` that is no repository name mounts nothing; the answer is a plain new upload.
        assert status == 202, (status, body)
        assert not (tmp_path / "data/docker/registry/v2/repositories/thief/app/_layers").exists()
