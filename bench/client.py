"""The benchmark's HTTP client: pushes with aiohttp (bodies streamed from the blob file), pulls with raw sockets.

Pulls use a plain socket per client with `recv_into` a reused 1 MiB buffer, in threads, so the client costs
little more than the kernel's copy: the figure is the server's, not the client's. Every operation checks the
status and the byte count, so a fast error can never pass for a fast answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from bench.content import BlobFile, SmallBlob
from bench.procs import MIB

READ_SIZE = MIB


class BenchHTTPError(RuntimeError):
    """A server answered something other than what the benchmark step needs."""


async def _expect(resp: aiohttp.ClientResponse, status: int, what: str) -> None:
    if resp.status != status:
        body = (await resp.read())[:300].decode(errors="replace")
        raise BenchHTTPError(f"{what}: HTTP {resp.status} (expected {status}): {body}")


async def _file_range(blob: BlobFile, start: int, length: int) -> AsyncIterator[bytes]:
    """Bytes [start, start + length) of the blob: from the file, then from the variant's tail if it has one."""
    end = start + length
    file_end = blob.size - len(blob.tail) if blob.tail is not None else blob.size
    # Reads from the page cache take microseconds: reading inline keeps the client's own cost small.
    with blob.path.open("rb") as src:
        src.seek(start)
        left = max(0, min(end, file_end) - start)
        while left:
            chunk = src.read(min(READ_SIZE, left))
            if not chunk:
                raise BenchHTTPError(f"{blob.path} is shorter than {file_end} bytes")
            left -= len(chunk)
            yield chunk
    if blob.tail is not None and end > file_end:
        yield blob.tail[max(start, file_end) - file_end : end - file_end]


def _location(base: str, resp: aiohttp.ClientResponse) -> str:
    location = resp.headers.get("Location")
    if not location:
        raise BenchHTTPError(f"{resp.method} {resp.url}: no Location header")
    return urljoin(base, location)


def _with_digest(url: str, digest: str) -> str:
    return url + ("&" if "?" in url else "?") + "digest=" + digest


async def start_upload(session: aiohttp.ClientSession, base: str, repo: str) -> str:
    """POST an upload session; returns its absolute Location URL."""
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as resp:
        await _expect(resp, 202, f"POST upload to {repo}")
        return _location(base, resp)


async def push_monolithic(session: aiohttp.ClientSession, base: str, repo: str, blob: BlobFile) -> float:
    """POST, then one PUT with the whole body streamed from the file; returns seconds taken."""
    began = time.perf_counter()
    url = await start_upload(session, base, repo)
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
    body = _file_range(blob, 0, blob.size)
    async with session.put(_with_digest(url, blob.digest), data=body, headers=headers) as resp:
        await _expect(resp, 201, f"PUT blob {blob.digest} to {repo}")
    return time.perf_counter() - began


async def push_chunked(session: aiohttp.ClientSession, base: str, repo: str, blob: BlobFile, chunk_size: int) -> float:
    """POST, PATCH chunks with Content-Range, then an empty PUT; returns seconds taken."""
    began = time.perf_counter()
    url = await start_upload(session, base, repo)
    for start in range(0, blob.size, chunk_size):
        length = min(chunk_size, blob.size - start)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{start}-{start + length - 1}",
        }
        async with session.patch(url, data=_file_range(blob, start, length), headers=headers) as resp:
            await _expect(resp, 202, f"PATCH {start}-{start + length - 1} to {repo}")
            url = _location(base, resp)
    async with session.put(_with_digest(url, blob.digest), headers={"Content-Length": "0"}) as resp:
        await _expect(resp, 201, f"PUT (close) {blob.digest} to {repo}")
    return time.perf_counter() - began


async def push_small(session: aiohttp.ClientSession, base: str, repo: str, blob: SmallBlob) -> None:
    """Upload a small blob with POST then PUT (the flow every registry supports)."""
    url = await start_upload(session, base, repo)
    headers = {"Content-Type": "application/octet-stream"}
    async with session.put(_with_digest(url, blob.digest), data=blob.data, headers=headers) as resp:
        await _expect(resp, 201, f"PUT blob {blob.digest} to {repo}")


async def put_manifest(session: aiohttp.ClientSession, base: str, repo: str, ref: str, m: SmallBlob) -> None:
    """PUT a manifest under a tag or digest."""
    headers = {"Content-Type": m.media_type}
    async with session.put(f"{base}/v2/{repo}/manifests/{ref}", data=m.data, headers=headers) as resp:
        await _expect(resp, 201, f"PUT manifest {repo}:{ref}")


async def put_tags(
    session: aiohttp.ClientSession, base: str, repo: str, m: SmallBlob, tags: list[str], concurrency: int = 8
) -> None:
    """PUT one manifest under every tag, a few at a time."""
    queue = list(reversed(tags))

    async def worker() -> None:
        while queue:
            await put_manifest(session, base, repo, queue.pop(), m)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def get_json(session: aiohttp.ClientSession, url: str) -> object:
    """GET url and decode its JSON body (status 200 required)."""
    async with session.get(url) as resp:
        await _expect(resp, 200, f"GET {url}")
        return await resp.json(content_type=None)


@dataclass(frozen=True)
class PullResult:
    """Bytes received by all clients together and the wall time until the last one finished."""

    nbytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        """Aggregate throughput in MB/s (10^6 bytes)."""
        return self.nbytes / self.seconds / 1e6


def _pull_once(url: str, expected_size: int, ready: threading.Barrier) -> int:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    with socket.create_connection((host, port), timeout=60) as sock:
        ready.wait()
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            got = sock.recv(65536)
            if not got:
                raise BenchHTTPError(f"GET {url}: connection closed in the headers")
            head += got
        header_blob, _, rest = head.partition(b"\r\n\r\n")
        status_line, *lines = header_blob.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        if status != 200:
            raise BenchHTTPError(f"GET {url}: HTTP {status}")
        if "content-length" not in headers:
            raise BenchHTTPError(f"GET {url}: no Content-Length (transfer-encoding {headers.get('transfer-encoding')})")
        length = int(headers["content-length"])
        if length != expected_size:
            raise BenchHTTPError(f"GET {url}: Content-Length {length}, expected {expected_size}")
        received = len(rest)
        while received < length:
            n = sock.recv_into(view)
            if n == 0:
                raise BenchHTTPError(f"GET {url}: cut after {received} of {length} bytes")
            received += n
        return received


def pull(url: str, expected_size: int, clients: int) -> PullResult:
    """GET url from `clients` concurrent connections (threads); the clock starts once all are connected."""
    ready = threading.Barrier(clients + 1)
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(_pull_once(url, expected_size, ready))
        except BaseException as exc:
            errors.append(exc)
            ready.abort()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    # A client that failed to connect breaks the barrier; its error is raised below.
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout=30)
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if errors:
        raise BenchHTTPError(str(errors[0])) from errors[0]
    return PullResult(sum(results), seconds)
