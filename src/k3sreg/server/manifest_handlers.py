"""Manifests, tags, referrers and the catalog."""

from __future__ import annotations

import json
from urllib.parse import quote

from aiohttp import web

from k3sreg import errors
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.manifest import platform_child
from k3sreg.server import body, routes
from k3sreg.server.access import catalog_filter
from k3sreg.server.context import Context, Resolved
from k3sreg.storage.catalog import page
from k3sreg.storage.manifests import StoredManifest
from k3sreg.storage.repository import Repository


async def manifest(request: web.Request, ctx: Context, res: Resolved) -> web.StreamResponse:
    name, ref = res.repo, res.route.ref
    if request.method in ("GET", "HEAD"):
        accept = _accepted(request)
        stored = await res.view.get_manifest(ref, sorted(accept))
        stored = await _negotiate(res.view, accept, stored, res.route.digest is None)
        headers = {"Content-Type": stored.media_type, "Docker-Content-Digest": str(stored.digest),
                   "ETag": f'"{stored.digest}"', "Content-Length": str(stored.size)}
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        if ctx.access is not None and not res.proxied:  # the cache records its own pulls
            ctx.access.manifest_pulled(res.repo, stored.digest)
        return web.Response(status=200, body=stored.data, headers=headers)
    if request.method == "PUT":
        ctx.check_write()
        data = await body.read_limited(request, ctx.limits.manifest_bytes, ctx.limits.body_timeout,
                                       errors.ManifestTooLarge)
        stored = await ctx.store.put_manifest(name, ref, data, request.headers.get("Content-Type"))
        headers = {"Location": ctx.url(request, f"/v2/{name}/manifests/{stored.digest}"),
                   "Docker-Content-Digest": str(stored.digest), "Content-Length": "0"}
        if stored.parsed is not None and stored.parsed.subject is not None:
            headers["OCI-Subject"] = str(stored.parsed.subject.digest)
        return web.Response(status=201, headers=headers)
    if request.method == "DELETE":
        ctx.check_delete()
        await ctx.store.delete_manifest(name, ref)
        return web.Response(status=202, headers={"Content-Length": "0"})
    raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "PUT", "DELETE"])


def _accepted(request: web.Request) -> set[str]:
    return {a.split(";")[0].strip() for h in request.headers.getall("Accept", []) for a in h.split(",") if a.strip()}


async def _negotiate(view: Repository, accepted: set[str], stored: StoredManifest, by_tag: bool) -> StoredManifest:
    """Distribution's rule for old Docker clients: one that accepts Docker image manifests but not lists gets,
    by tag, the linux/amd64 entry of a Docker manifest list, by that entry's own digest.

    A manifest asked for by digest is the stored one or none, and an OCI index is never swapped for another
    manifest (docker-registry 2.8.2 answers MANIFEST_UNKNOWN there too). Clients that send no Accept, accept
    the type or `*/*`, or accept no image manifest type get what was pushed. The stored bytes are never read
    as trusted: a registry:2 volume may hold anything.
    """
    if (stored.media_type not in mt.INDEXES or not accepted or stored.media_type in accepted or "*/*" in accepted
            or not (accepted & mt.IMAGE_MANIFESTS)):
        return stored
    if stored.media_type == mt.DOCKER_MANIFEST_LIST:
        if not by_tag:
            return stored
        child = platform_child(stored.data, "linux", "amd64") if mt.DOCKER_MANIFEST in accepted else None
        if child is not None:
            found = await view.get_manifest(str(child), sorted(accepted))
            if found.media_type in accepted:
                return found
    raise errors.ManifestUnknown(f"{stored.media_type} found, but the Accept header does not allow it")


def _n_param(request: web.Request) -> int | None:
    raw = request.query.get("n")
    if raw is None or raw == "":
        return None
    try:
        n = int(raw)
    except ValueError:
        raise errors.PaginationNumberInvalid(f"n={raw!r} is not a number") from None
    if n < 0:
        raise errors.PaginationNumberInvalid(f"n={raw!r} must not be negative")
    return n


def _link(path: str, n: int | None, last: str) -> str:
    return f'<{path}?n={n}&last={quote(last, safe="")}>; rel="next"'


async def tags(request: web.Request, ctx: Context, res: Resolved) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET"])
    n = _n_param(request)
    if n is not None:
        n = min(n, ctx.tags_max)
    items, more = page(await res.view.tags(), n, routes.last_tag(request.query.get("last")))
    headers = {}
    name = res.route.name
    if more and items:
        headers["Link"] = _link(f"/v2/{name}/tags/list", n, items[-1])
    return web.json_response({"name": name, "tags": items}, headers=headers)


async def catalog(request: web.Request, ctx: Context, res: Resolved) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET"])
    asked = _n_param(request)
    n = ctx.catalog_max if asked is None else min(asked, ctx.catalog_max)
    names = await ctx.store.catalog()
    visible = catalog_filter(request)
    if visible is not None:  # under access control: only what the caller may pull
        names = [name for name in names if visible(name)]
    items, more = page(names, n, routes.last_name(request.query.get("last")))
    headers = {}
    if more and items:
        headers["Link"] = _link("/v2/_catalog", n, items[-1])
    return web.json_response({"repositories": items}, headers=headers)


async def referrers(request: web.Request, ctx: Context, res: Resolved) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET"])
    subject = res.route.digest
    assert subject is not None  # routes.parse gives referrers their digest
    artifact_type = request.query.get("artifactType") or None
    found = await res.view.referrers(subject, artifact_type)
    headers = {"Content-Type": mt.OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [d.to_json() for d in found]}
    return web.Response(status=200, body=json.dumps(doc).encode(), headers=headers)
