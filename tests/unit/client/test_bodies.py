"""Bodies against in-process servers: a blob resumed with a Range (206, or a registry that ignores it), a body
cut mid-way, and a manifest whose cut body is asked for again."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from k3sreg.errors import Unavailable
from k3sreg.oci.digest import Digest
from k3sreg.oci.mediatypes import OCI_MANIFEST
from tests.unit.client.conftest import Seen, Serve, make_client, recording_app

BLOB = bytes(range(256)) * 1024
DIGEST = Digest.of(BLOB)
MANIFEST = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}'


def blob_app(seen: Seen, ranges: str) -> web.Application:
    """Serves BLOB; `ranges` is "honour", "ignore" (always the whole blob) or "wrong" (a 206 from byte 1)."""
    app = recording_app(seen)

    async def get(request: web.Request) -> web.Response:
        asked = request.headers.get("Range", "")
        if not asked or ranges == "ignore":
            return web.Response(body=BLOB)
        start = int(asked.removeprefix("bytes=").removesuffix("-"))
        if ranges == "wrong":
            start = 1
        return web.Response(status=206, body=BLOB[start:],
                            headers={"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})

    app.router.add_get(f"/v2/org/app/blobs/{DIGEST}", get)
    return app


async def read(url: str, offset: int) -> tuple[bytes, int | None]:
    async with make_client(url) as client, client.open_blob("org/app", DIGEST, offset) as blob:
        return b"".join([chunk async for chunk in blob]), blob.size


@pytest.mark.parametrize("ranges", ["honour", "ignore"])
async def test_resume_from_an_offset(serve: Serve, ranges: str) -> None:
    """A download opened at an offset asks for `Range: bytes=N-` and yields the bytes from N on, whether the
    registry answers 206 or sends the whole blob again (the head is skipped); `size` is the whole blob's."""
    seen = Seen()
    url = await serve(blob_app(seen, ranges))
    offset = 100_000
    data, size = await read(url, offset)
    assert data == BLOB[offset:]
    assert size == len(BLOB)
    async with make_client(url) as client, client.open_blob("org/app", DIGEST, offset):
        pass
    assert len(seen.requests) == 2


async def test_range_answer_from_another_offset_is_refused(serve: Serve) -> None:
    """A 206 that starts elsewhere than asked is Unavailable, before any byte is yielded."""
    with pytest.raises(Unavailable, match="asked for bytes from 100, got Content-Range 'bytes 1-"):
        await read(await serve(blob_app(Seen(), "wrong")), 100)


async def test_range_header_is_sent_only_when_resuming(serve: Serve) -> None:
    """Offset 0 sends no Range; offset N sends `bytes=N-`."""
    ranges: list[str | None] = []
    app = web.Application()

    async def get(request: web.Request) -> web.Response:
        ranges.append(request.headers.get("Range"))
        return web.Response(body=BLOB)

    app.router.add_get(f"/v2/org/app/blobs/{DIGEST}", get)
    url = await serve(app)
    await read(url, 0)
    await read(url, 7)
    assert ranges == [None, "bytes=7-"]


class CuttingServer:
    """A raw HTTP server: answers with `Content-Length: len(body)`, sends `cuts[i]` bytes of the body on
    connection i, then closes it (None: the whole body)."""

    def __init__(self, body: bytes, cuts: list[int | None], content_type: str = "application/octet-stream"):
        self.body, self.cuts, self.content_type = body, cuts, content_type
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        cut = self.cuts[min(self.connections, len(self.cuts) - 1)]
        self.connections += 1
        head = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.body)}\r\nContent-Type: {self.content_type}\r\n"
                "Connection: close\r\n\r\n")
        writer.write(head.encode() + self.body[:cut])
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_a_cut_blob_body_raises_from_the_iterator() -> None:
    """A blob whose connection closes after 40000 of its bytes: those bytes arrive, then Unavailable says how
    many came."""
    received = bytearray()
    async with CuttingServer(BLOB, [40_000]) as url, make_client(url) as client:
        with pytest.raises(Unavailable, match=r"broke off after 40000 bytes|ended after 40000 of"):
            async with client.open_blob("org/app", DIGEST) as blob:
                async for chunk in blob:
                    received += chunk
    assert bytes(received) == BLOB[:40_000]


async def test_a_cut_manifest_body_is_asked_for_again() -> None:
    """A manifest whose first body breaks off is fetched again after the first wait; a body that keeps breaking
    off is Unavailable after the retries, saying so."""
    server = CuttingServer(MANIFEST, [10, None], OCI_MANIFEST)
    async with server as url, make_client(url, retries=2) as client:
        got = await client.get_manifest("org/app", "1", [OCI_MANIFEST])
    assert got.data == MANIFEST and server.connections == 2 and client.waits == [0.1]
    async with CuttingServer(MANIFEST, [10]) as url, make_client(url, retries=1) as client:
        with pytest.raises(Unavailable, match="the manifest download failed after 2 attempts"):
            await client.get_manifest("org/app", "1", [OCI_MANIFEST])
