"""Blob downloads with sendfile(2), under uvloop too.

aiohttp's FileResponse asks the event loop for sendfile; uvloop has none, so aiohttp falls back to reading
256 KiB pieces in threads and writing them through the transport (twice the CPU per byte, and a copy through
user space). Here the response headers go out through aiohttp as usual, then a thread runs sendfile(2)
straight from the blob file to the socket, waiting with poll(2) when the socket is full, with TCP_CORK set
meanwhile (as nginx's `tcp_nopush`): only full segments go out, which took 1-client pulls from ~0.72x to
~0.93x of nginx's MB/s. The loop does not
write to that connection meanwhile (the response is in progress), and the socket stays non-blocking, so
uvloop's own reads are unaffected. TLS connections, and the rare moment when every sendfile thread is busy,
take aiohttp's own path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

_THREADS = 64
_pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="k3sreg-sendfile")
_slots = threading.BoundedSemaphore(_THREADS)
STALL_TIMEOUT = 60.0  # a client that takes nothing for this long is dropped


class BlobFileResponse(web.FileResponse):
    """A FileResponse whose body always moves with sendfile(2) on plain-TCP connections."""

    async def _sendfile(self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
                        ) -> AbstractStreamWriter:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if (transport is None or sock is None or count <= 0 or self.compression
                or transport.get_extra_info("sslcontext") is not None or not _slots.acquire(blocking=False)):
            return await super()._sendfile(request, fobj, offset, count)
        try:
            writer = await web.StreamResponse.prepare(self, request)
            assert writer is not None
            send_headers = getattr(writer, "send_headers", None)
            if send_headers is not None:
                send_headers()
            # The headers must be on the wire before the body bytes that bypass the transport.
            while transport.get_write_buffer_size() and not transport.is_closing():
                await writer.drain()
                await asyncio.sleep(0)
            loop = asyncio.get_running_loop()
            _cork(sock, True)
            sent = [0]
            try:
                # The thread sends on a duplicate, which it closes: if the client goes away meanwhile, the loop
                # closes its own descriptor, and a new connection that reuses the number must never get these bytes.
                await loop.run_in_executor(_pool, _send_all, os.dup(sock.fileno()), fobj.fileno(), offset, count,
                                           sent)
            except OSError as e:
                if isinstance(e, ConnectionError) or not transport.is_closing():
                    raise
                # The client closed the connection, and the loop its socket, while the thread was sending.
                raise ConnectionResetError(f"client went away during sendfile: {e}") from None
            except BaseException:
                # The headers are out and the body is not: the only honest answer left is a cut connection.
                transport.abort()
                raise
            finally:
                # Uncorking sends the last partial segment now rather than after the kernel's 200 ms cap.
                _cork(sock, False)
                # The body bypassed the writer: count it there, so the access log's size includes it.
                writer.output_size += sent[0]
        finally:
            _slots.release()
        await web.StreamResponse.write_eof(self)
        return writer


def _cork(sock: Any, on: bool) -> None:
    # OSError: a unix socket, or a connection the client already closed; ValueError: uvloop's view of a socket
    # the loop has closed meanwhile (its descriptor is -1).
    with contextlib.suppress(OSError, ValueError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))


def _send_all(sock_fd: int, file_fd: int, offset: int, count: int, sent: list[int]) -> None:
    """sendfile(2) `count` bytes from `offset` to `sock_fd`, which it closes; `sent[0]` counts what went out,
    also when it fails midway."""
    try:
        poller = select.poll()
        poller.register(sock_fd, select.POLLOUT)
        while count > 0:
            try:
                n = os.sendfile(sock_fd, file_fd, offset, min(count, 1 << 30))
            except BlockingIOError:
                if not poller.poll(STALL_TIMEOUT * 1000):
                    raise ConnectionResetError("client stopped reading") from None
                continue
            if n == 0:
                raise ConnectionResetError("blob file ended early")
            offset += n
            count -= n
            sent[0] += n
    finally:
        os.close(sock_fd)
