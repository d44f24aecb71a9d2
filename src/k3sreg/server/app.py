"""The composition root: settings in, a wired aiohttp application out.

Drivers are chosen here and only here, from the settings' storage discriminator.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from k3sreg import errors
from k3sreg.auth.setup import AccessSetup, build_access
from k3sreg.config import Settings
from k3sreg.server import blob_handlers, health, manifest_handlers, metrics, routes, stats, token_endpoint, webui
from k3sreg.server.access import AccessGate, make_access_middleware
from k3sreg.server.context import CONTEXT, Context, Limits, Resolved
from k3sreg.server.middleware import make_middlewares
from k3sreg.storage import gc, maintenance
from k3sreg.storage.access import AccessClock
from k3sreg.storage.driver import Driver
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.memory import MemoryDriver
from k3sreg.storage.store import Store
from k3sreg.upstream.hub import ProxyHub
from k3sreg.upstream.routing import Target

log = logging.getLogger("k3sreg.server")
_LOCATED: web.RequestKey[tuple[routes.Route, Target | None]] = web.RequestKey("k3sreg_located", tuple)

_HANDLERS = {
    "manifest": manifest_handlers.manifest,
    "blob": blob_handlers.blob,
    "upload": blob_handlers.upload,
    "tags": manifest_handlers.tags,
    "catalog": manifest_handlers.catalog,
    "referrers": manifest_handlers.referrers,
}


def check_supported(settings: Settings) -> None:
    """Refuse, before anything starts, settings this version parses but cannot honour, and `auth` files that
    cannot be used (read here once, so that a bad file stops `serve` before any worker starts)."""
    if settings.storage.driver == "s3":
        raise errors.ConfigError(["storage.s3: the s3 driver is not available in this version of k3sreg; use "
                                  "filesystem"])
    if settings.auth is not None:
        _access_setup(settings, None, create_keys=False)


def _access_setup(settings: Settings, ctx: Context | None, create_keys: bool = True) -> AccessSetup:
    assert settings.auth is not None
    fs = settings.storage.filesystem
    canonical = None
    if ctx is not None and ctx.proxy is not None:
        canonical = _canonical(ctx)
    return build_access(settings.auth, settings.access, settings.http.host,
                        str(fs.rootdirectory) if fs is not None else None, canonical, create_keys)


def _canonical(ctx: Context) -> Callable[[str], str]:
    """The repository a request for `name` (without `ns`) touches: the cache name of a path-prefixed upstream."""
    def canonical(name: str) -> str:
        try:
            return ctx.resolve(name, None).cache_repo
        except errors.RegistryError:
            return name

    return canonical


def make_driver(settings: Settings) -> Driver:
    """The storage driver the settings name."""
    kind = settings.storage.driver
    if kind == "filesystem":
        assert settings.storage.filesystem is not None
        return FilesystemDriver(settings.storage.filesystem.rootdirectory)
    assert kind == "inmemory", kind
    return MemoryDriver()


def _locate(request: web.Request) -> tuple[routes.Route, Target | None]:
    """The route of a `/v2/` request and the repository it acts on (local, or an upstream's cache), once per
    request: the access middleware and the handler see the same answer."""
    found: tuple[routes.Route, Target | None] | None = request.get(_LOCATED)
    if found is not None:
        return found
    ctx = request.app[CONTEXT]
    route = routes.parse(request.match_info.get("tail", ""), request.method)
    target = None
    if route.name:
        # `ns` only steers the choice of an upstream; a plain registry ignores it, as registry:2 does.
        target = ctx.resolve(route.name, routes.namespace(request.query.get("ns")) if ctx.proxy else None)
        reading = request.method in ("GET", "HEAD") and route.kind != "upload"
        if target.upstream is not None and not reading:
            if not target.default:
                raise errors.Unsupported(f"{target.upstream.name} is a pull-through upstream here: push to a name "
                                         f"outside {target.upstream.name}/ instead")
            target = Target(route.name)  # registry:2 proxy mode, but pushes to plain names stay possible
    request[_LOCATED] = found = (route, target)
    return found


def _touched(request: web.Request) -> tuple[routes.Route, str | None]:
    route, target = _locate(request)
    return route, target.cache_repo if target is not None else None


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Every `/v2/` request: parse the path, resolve the repository (local or an upstream's), call the handler."""
    ctx = request.app[CONTEXT]
    route, target = _locate(request)
    if route.kind == "base":
        return web.json_response({})
    handler = _HANDLERS.get(route.kind)
    if handler is None:
        raise errors.NameUnknown(f"no such endpoint: {request.path}")
    if target is None:  # the catalog
        return await handler(request, ctx, Resolved(route, "", ctx.repository(Target("")), False))
    return await handler(request, ctx, Resolved(route, target.cache_repo, ctx.repository(target),
                                                target.upstream is not None))


def create_app(settings: Settings, store: Store | None = None) -> web.Application:
    """The application for `settings`; `store` may be given by tests to share one store."""
    check_supported(settings)
    limits = Limits(
        manifest_bytes=settings.limits.manifestsize,
        blob_bytes=settings.limits.blobsize,
        body_timeout=settings.limits.bodytimeout,
    )
    if store is None:
        fs = settings.storage.filesystem
        store = Store(make_driver(settings), threads=min(fs.maxthreads, 32) if fs else 16,
                      blob_limit=limits.blob_bytes)
    ctx = Context(
        store=store,
        limits=limits,
        delete_enabled=settings.storage.delete.enabled,
        read_only=settings.storage.maintenance.readonly.enabled,
        host=settings.http.host,
        relative_urls=settings.http.relativeurls,
        catalog_max=settings.catalog.maxentries,
        tags_max=settings.tags.maxtags,
        access=AccessClock(store, 60.0),  # last pulls of local manifests, to the minute (the web page)
    )
    upstreams = settings.effective_upstreams
    if upstreams:
        ctx.proxy = ProxyHub(store, upstreams, settings.own_names, settings.proxy_upstream,
                             settings.limits.manifestsize)
    state = health.Health()
    middlewares = make_middlewares(settings.http.headers, state.problems)
    setup = _access_setup(settings, ctx) if settings.auth is not None else None
    if setup is not None:
        middlewares.append(make_access_middleware(setup, _touched))
        # A client that knows a digest must not link a blob from a repository it may not pull: mounts need `from`.
        ctx.mount_anywhere = False
    app = web.Application(middlewares=middlewares, client_max_size=1 << 20)
    app[CONTEXT] = ctx
    if setup is not None and setup.service is not None:
        token_endpoint.install(app, setup.service, setup.token_paths)
    health.install(app, settings.health, store, state, writable=not ctx.read_only)
    app.router.add_route("*", "/v2/{tail:.*}", dispatch)
    app.router.add_route("*", "/v2", _redirect_base)
    root = str(settings.storage.filesystem.rootdirectory) if settings.storage.filesystem else None
    metrics.preset_routes(routes.KINDS)
    if not metrics.on_debug_listener(settings.http):
        app.router.add_get("/metrics", metrics.handler(root))
    app.router.add_get("/debug/upstreams", metrics.upstreams_handler())
    history, names = stats.SavingsHistory(), [u.name for u in upstreams]
    for job in stats.jobs(store, history, names, settings.web.sampleinterval):
        app.cleanup_ctx.append(_background(job))
    if settings.web.enabled:
        gate = None if setup is None else AccessGate(setup)
        webui.install(app, settings.web, ctx, history, names, root, gate)
    app.on_cleanup.append(lambda _app: _close(ctx))
    if ctx.proxy is not None:
        app.cleanup_ctx.append(_background(ctx.proxy.evict_forever))
    purging = settings.storage.maintenance.uploadpurging
    if purging.enabled:
        app.cleanup_ctx.append(_background(_purger(store, purging.age, purging.interval, purging.dryrun)))
    cached = ctx.proxy.caches if ctx.proxy is not None else None
    collect, scrub = settings.storage.gc, settings.storage.scrub
    if collect is not None and collect.enabled and not ctx.read_only:
        # The cache's untagged manifests (pulled by digest) are eviction's to remove, not garbage collection's.
        untagged_in = (lambda repo: not cached(repo)) if cached is not None else None
        app.cleanup_ctx.append(_background(functools.partial(maintenance.collect_forever, store, collect,
                                                             untagged_in)))
    if scrub is not None and scrub.enabled and not ctx.read_only:
        app.cleanup_ctx.append(_background(functools.partial(maintenance.scrub_forever, store, scrub, cached)))
    return app


def _count_collection(report: gc.Report | object) -> None:
    """Count a garbage collection run this process made in the metrics (a dry run frees nothing)."""
    if isinstance(report, gc.Report) and not report.dry_run:
        metrics.record_gc(report.bytes_freed, report.manifests_removed + report.blobs_removed)


# Once per process, not per application: tests build many applications in one process.
maintenance.listen(_count_collection)


def _background(job: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs `job` for the application's lifetime."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(job())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def debug_app(settings: Settings) -> web.Application:
    """The application of Distribution's debug listener (`http.debug.addr`): the metrics, when
    `http.debug.prometheus` is enabled, at its `path`."""
    app = web.Application()
    prometheus = settings.http.debug.prometheus if settings.http.debug else None
    if prometheus is not None and prometheus.enabled:
        fs = settings.storage.filesystem
        app.router.add_get(prometheus.path, metrics.handler(str(fs.rootdirectory) if fs else None))
    return app


async def _close(ctx: Context) -> None:
    if ctx.proxy is not None:
        await ctx.proxy.close()
    ctx.store.close()


async def _redirect_base(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/v2/")


def _purger(store: Store, age: float, interval: float, dry_run: bool) -> Callable[[], Coroutine[Any, Any, None]]:
    async def loop() -> None:
        while True:
            try:
                removed = await store.purge_uploads(age, dry_run)
                if removed:
                    log.info("upload purging: %s %d abandoned uploads", "would remove" if dry_run else "removed",
                             len(removed))
            except Exception:
                log.exception("upload purging failed")
            await asyncio.sleep(interval)

    return loop
