"""`server/sendfile.py` overrides aiohttp's private `FileResponse._sendfile`: this checks that aiohttp still calls it.

aiohttp is pinned to the minor series the override was written against (pyproject.toml); when the pin moves,
this test says whether blob GETs still take the override's sendfile(2) path or silently fall back to aiohttp's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from k3sreg.server import sendfile
from tests.integration.api_harness import running


async def test_blob_gets_go_through_the_sendfile_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob GET over plain TCP, whole and ranged, is sent by BlobFileResponse's own sendfile(2) loop."""
    calls: list[tuple[int, int]] = []
    send_all = sendfile._send_all

    def spy(sock_fd: int, file_fd: int, offset: int, count: int, sent: list[int]) -> None:
        calls.append((offset, count))
        send_all(sock_fd, file_fd, offset, count, sent)

    monkeypatch.setattr(sendfile, "_send_all", spy)
    data = os.urandom(300_000)
    async with running(tmp_path) as api:
        digest = await api.push_blob("sendfile/app", data)
        whole = await api.req("GET", f"/v2/sendfile/app/blobs/{digest}")
        ranged = await api.req("GET", f"/v2/sendfile/app/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert (whole[0], whole[2]) == (200, data)
    assert (ranged[0], ranged[2]) == (206, data[100:200])
    assert calls == [(0, len(data)), (100, 100)]
