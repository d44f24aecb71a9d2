"""Request bodies as async iterators, with an idle timeout and a size limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from k3sreg import errors

_POLL = 1.0


async def chunks(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body as it arrives; BodyTimeout when nothing came for `idle_timeout` seconds.

    A client that vanishes mid-body does not always wake the reader, so a stalled read also checks, every
    second, whether the connection is gone.
    """
    content = request.content
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        while True:
            try:
                async with asyncio.timeout(min(_POLL, idle_timeout) if idle_timeout else _POLL):
                    chunk = await content.readany()
                break
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("client disconnected in the middle of the body") from None
                if idle_timeout and loop.time() - started >= idle_timeout:
                    raise errors.BodyTimeout(f"no request body data for {idle_timeout:g}s") from None
        if not chunk:
            if content.exception() is None and request.content_length is not None and not content.is_eof():
                continue
            return
        yield chunk


async def read_limited(request: web.Request, limit: int, idle_timeout: float,
                       too_large: type[errors.RegistryError]) -> bytes:
    """The whole (small) body; `too_large` is raised as soon as it passes `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(f"body of {request.content_length} bytes exceeds the limit of {limit}")
    buf = bytearray()
    async for chunk in chunks(request, idle_timeout):
        buf += chunk
        if len(buf) > limit:
            raise too_large(f"body exceeds the limit of {limit} bytes")
    return bytes(buf)
