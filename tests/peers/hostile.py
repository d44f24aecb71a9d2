"""A hostile upstream for pull-through tests: an HTTP front of a real registry that spoils chosen answers the way
broken upstreams, misconfigured mirrors and captive portals do, while every answer keeps its 200.

API (run it in the test's event loop):
  ``async with HostileUpstream(target_url) as up:`` (or ``await up.start()`` ... ``await up.stop()``) serves on
  127.0.0.1:<free port> (``up.url``) and passes every request on to the registry at ``target_url``, changing only
  what the switches below ask for; once stopped, its port refuses connections (a dead upstream). Switches are
  attributes, changeable while it runs (all None = a faithful upstream):
    * ``blobs``: ``"flip"`` changes one byte in the middle of every blob body (same length, wrong bytes);
      ``"html"`` answers every blob GET with an HTML page instead;
    * ``manifests``: ``"html"`` answers every manifest GET and HEAD with an HTML page (no digest header);
      ``"flip"`` changes one byte of every manifest body and keeps the headers; ``"wrong-digest"`` keeps the
      body and names the digest of other content in ``Docker-Content-Digest``;
    * ``rate``: blob bodies are paced to about this many bytes per second (so that followers join a transfer).
  ``requests``: (method, path with query) of every request received.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web

HTML = b"<!DOCTYPE html><html><body><h1>Please sign in to continue</h1></body></html>\n"
WRONG_DIGEST = "sha256:" + hashlib.sha256(b"some other manifest").hexdigest()
_KIND = re.compile(r"^/v2/.+/(blobs|manifests)/[^/]+$")
_PASSED_ON = ("Accept", "Range", "Authorization")
_KEPT = ("Content-Type", "Content-Length", "Content-Range", "Docker-Content-Digest", "ETag", "Location",
         "WWW-Authenticate", "Docker-Distribution-Api-Version")


class HostileUpstream:
    """A registry front that spoils blobs or manifests on demand (see the module docstring)."""

    def __init__(self, target_url: str) -> None:
        self.target = target_url.rstrip("/")
        self.blobs: str | None = None
        self.manifests: str | None = None
        self.rate: int | None = None
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> Self:
        """Listen on a free port of 127.0.0.1 (`url`)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def stop(self) -> None:
        """Stop listening (again is harmless)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        match = _KIND.match(request.path)
        kind = match.group(1) if match else None
        if kind == "blobs" and self.blobs == "html" and request.method == "GET":
            return web.Response(body=HTML, content_type="text/html")
        if kind == "manifests" and self.manifests == "html":
            return web.Response(body=HTML, content_type="text/html")
        assert self._session is not None
        headers = {k: request.headers[k] for k in _PASSED_ON if k in request.headers}
        async with self._session.request(request.method, self.target + request.path_qs, headers=headers,
                                         allow_redirects=False) as up:
            kept = {k: up.headers[k] for k in _KEPT if k in up.headers}
            if kind == "manifests" and self.manifests == "wrong-digest" and "Docker-Content-Digest" in kept:
                kept["Docker-Content-Digest"] = WRONG_DIGEST
            if request.method == "HEAD":
                return web.Response(status=up.status, headers=kept)
            if kind == "manifests":
                body = await up.read()
                if self.manifests == "flip" and up.status == 200:
                    body = _flip(body, len(body) // 2)
                return web.Response(status=up.status, headers=kept, body=body)
            return await self._stream(request, up, kept, flip=kind == "blobs" and self.blobs == "flip")

    async def _stream(self, request: web.Request, up: aiohttp.ClientResponse, headers: dict[str, str],
                      flip: bool) -> web.StreamResponse:
        resp = web.StreamResponse(status=up.status, headers=headers)
        await resp.prepare(request)
        middle = (up.content_length or 0) // 2
        sent = 0
        async for chunk in up.content.iter_chunked(64 << 10):
            if flip and up.status == 200 and sent <= middle < sent + len(chunk):
                chunk = _flip(chunk, middle - sent)
            await resp.write(chunk)
            sent += len(chunk)
            if self.rate:
                await asyncio.sleep(len(chunk) / self.rate)
        await resp.write_eof()
        return resp


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:]
