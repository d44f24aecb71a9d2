"""Blobs and uploads: GET/HEAD/DELETE of a blob, and the upload session protocol."""

from __future__ import annotations

import asyncio
import contextlib
import re

from aiohttp import web

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.server import body, routes
from k3sreg.server.context import Context, Resolved
from k3sreg.server.sendfile import BlobFileResponse
from k3sreg.storage.blobs import BlobInfo
from k3sreg.storage.repository import Repository
from k3sreg.storage.uploads import new_upload_id, upload_range

_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


async def blob(request: web.Request, ctx: Context, res: Resolved) -> web.StreamResponse:
    d = res.route.digest
    assert d is not None  # routes.parse gives blobs their digest
    if request.method == "DELETE":
        ctx.check_delete()
        await ctx.store.delete_blob(res.repo, d)
        return web.Response(status=202, headers={"Content-Length": "0", "Docker-Content-Digest": str(d)})
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "DELETE"])
    view = res.view
    info = await view.stat_blob(d)
    headers = {"Docker-Content-Digest": str(d), "Content-Type": "application/octet-stream",
               "ETag": f'"{d}"', "Accept-Ranges": "bytes", "Cache-Control": "max-age=31536000"}
    if request.method == "HEAD":
        headers["Content-Length"] = str(info.size)
        return web.Response(status=200, headers=headers)
    local = view.local_path(info)
    if local is not None:
        if "Range" in request.headers and request.if_range is None:
            _byte_range(request, info.size)  # only to refuse with OCI JSON what sendfile would refuse bare
        # sendfile() from the blob file; aiohttp answers Range with 206.
        view.count_sendfile(info.size)
        return BlobFileResponse(local, headers=headers)
    return await _stream(request, view, info, headers)


def _byte_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The (first, last) byte of a single Range, or None for the whole blob; RANGE_INVALID (416) when the
    header is malformed, or not satisfiable for `size` bytes."""
    try:
        rng = request.http_range
    except ValueError:
        raise errors.RangeInvalid(f"malformed Range header {request.headers.get('Range')!r}",
                                  headers={"Content-Range": f"bytes */{size}"}) from None
    if rng.start is None and rng.stop is None:
        return None
    start = rng.start if rng.start is not None else 0
    if start < 0:
        start = max(size + start, 0)
    end = min((rng.stop - 1) if rng.stop is not None else size - 1, size - 1)
    if start >= size or start > end:
        raise errors.RangeInvalid(headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def _stream(request: web.Request, view: Repository, info: BlobInfo, headers: dict[str, str]
                  ) -> web.StreamResponse:
    """Serve a blob from a driver without local files, honouring a single Range."""
    start, end = 0, info.size - 1
    status = 200
    asked = _byte_range(request, info.size)
    if asked is not None:
        start, end = asked
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    length = end - start + 1 if info.size else 0
    headers["Content-Length"] = str(length)
    resp = web.StreamResponse(status=status, headers=headers)
    await resp.prepare(request)
    try:
        async for chunk in view.read_blob(info, start, length):
            await resp.write(chunk)
    except BaseException:
        # Headers are gone: whatever failed (an upstream's bad bytes, a disk, a bug), the only honest signal
        # left is a cut connection, never a short "complete" body.
        if request.transport is not None:
            request.transport.abort()
        raise
    await resp.write_eof()
    return resp


def _upload_headers(ctx: Context, request: web.Request, name: str, uuid: str, size: int) -> dict[str, str]:
    return {
        "Location": ctx.url(request, f"/v2/{name}/blobs/uploads/{uuid}"),
        "Range": upload_range(size),
        "Docker-Upload-UUID": uuid,
        "Content-Length": "0",
    }


def _created(ctx: Context, request: web.Request, name: str, d: Digest) -> web.Response:
    return web.Response(status=201, headers={
        "Location": ctx.url(request, f"/v2/{name}/blobs/{d}"),
        "Docker-Content-Digest": str(d),
        "Content-Length": "0",
    })


async def upload(request: web.Request, ctx: Context, res: Resolved) -> web.StreamResponse:
    """POST opens (or mounts, or completes at once); PATCH/PUT/GET/DELETE act on the session in the URL."""
    name, uuid = res.repo, res.route.ref
    if request.method == "POST" and not uuid:
        return await _start(request, ctx, name)
    if not uuid:
        raise errors.BlobUploadUnknown("no upload session in the URL")
    if request.method == "GET":
        size = await ctx.store.upload_size(name, uuid)
        return web.Response(status=204, headers=_upload_headers(ctx, request, name, uuid, size))
    if request.method == "DELETE":
        await ctx.store.cancel_upload(name, uuid)
        return web.Response(status=204, headers={"Content-Length": "0"})
    ctx.check_write()
    if request.method == "PATCH":
        start, length = _content_range(request)
        size = await ctx.store.append_upload(name, uuid, body.chunks(request, ctx.limits.body_timeout),
                                                start, length)
        return web.Response(status=202, headers=_upload_headers(ctx, request, name, uuid, size))
    if request.method == "PUT":
        digest = request.query.get("digest")
        if not digest:
            raise errors.DigestInvalid("the closing PUT needs ?digest=")
        d = routes.digest(digest)
        await ctx.store.upload_size(name, uuid)
        if request.body_exists:
            start, length = _content_range(request)
            await ctx.store.append_upload(name, uuid, body.chunks(request, ctx.limits.body_timeout),
                                             start, length)
        await ctx.store.commit_upload(name, uuid, d)
        return _created(ctx, request, name, d)
    raise web.HTTPMethodNotAllowed(request.method, ["GET", "PATCH", "PUT", "DELETE"])


async def _start(request: web.Request, ctx: Context, name: str) -> web.StreamResponse:
    ctx.check_write()
    mount = request.query.get("mount")
    if mount:
        d = routes.digest(mount)
        given = request.query.get("from") or None
        source = routes.mount_source(given)
        # Without `from`, any blob the registry holds may be mounted: it is content-addressed, and the client
        # proved it knows the digest (not under access control: the caller must be allowed to pull `from`).
        # A `from` that is no repository name mounts nothing.
        anywhere = given is None and ctx.mount_anywhere
        if (anywhere or source is not None) and await ctx.store.mount_blob(name, d, source) is not None:
            return _created(ctx, request, name, d)
    digest = request.query.get("digest")
    d_mono = routes.digest(digest) if digest else None
    if d_mono is None:
        uuid = await ctx.store.create_upload(name)
        return web.Response(status=202, headers=_upload_headers(ctx, request, name, uuid, 0))
    uuid = new_upload_id()
    # A client that vanishes cancels this handler, possibly while the session is being created in a thread:
    # the clean-up waits for that creation, so nothing is left behind.
    create = asyncio.ensure_future(ctx.store.create_upload(name, uuid))
    try:
        await asyncio.shield(create)
        await ctx.store.append_upload(name, uuid, body.chunks(request, ctx.limits.body_timeout), None,
                                         request.content_length)
        await ctx.store.commit_upload(name, uuid, d_mono)
    except BaseException:
        await asyncio.shield(_forget(ctx, name, uuid, create))
        raise
    return _created(ctx, request, name, d_mono)


async def _forget(ctx: Context, name: str, uuid: str, created: asyncio.Future[str]) -> None:
    with contextlib.suppress(BaseException):
        await created
    with contextlib.suppress(errors.BlobUploadUnknown):
        await ctx.store.cancel_upload(name, uuid)


def _content_range(request: web.Request) -> tuple[int | None, int | None]:
    """(start offset from Content-Range, announced length); 416 for a malformed range."""
    length = request.content_length
    value = request.headers.get("Content-Range")
    if value is None:
        return None, length
    m = _CONTENT_RANGE.match(value.strip())
    if m is None:
        raise errors.RangeInvalid(f"malformed Content-Range {value!r}: expected <start>-<end>")
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise errors.RangeInvalid(f"Content-Range {value!r} ends before it starts")
    if length is not None and length != end - start + 1:
        raise errors.RangeInvalid(f"Content-Range {value!r} does not match Content-Length {length}")
    return start, end - start + 1
