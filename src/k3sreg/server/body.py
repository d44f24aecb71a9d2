"""Request bodies as async iterators, with an idle timeout and a size limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from k3sreg import errors


async def chunks(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body as it arrives; BodyTimeout when nothing came for `idle_timeout` seconds."""
    content = request.content
    while True:
        try:
            async with asyncio.timeout(idle_timeout or None):
                chunk = await content.readany()
        except TimeoutError:
            raise errors.BodyTimeout(f"no request body data for {idle_timeout:g}s") from None
        if not chunk:
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
