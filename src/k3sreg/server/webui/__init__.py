"""The web page of `serve` (`web.path`, `/` by default): repositories and tags, what the cache saves, storage
and garbage collection. Server-rendered HTML with a little script (copy buttons, search while typing) and its
own CSS, all served from here: it works without any network.

    GET  <path>/                         summary, upstreams, savings plot, repository list (?q= search, ?page=)
    GET  <path>/repositories/<name>      the tags of one repository (?q=, ?page=)
    POST <path>/_delete                  delete a tag (form: repository, tag, form_token)
    GET  <path>/_static/<file>           page.css, page.js, icon.svg

A list page reads the names from the catalog (remembered for `CATALOG_TTL` seconds, so typing in the search
box does not walk the store each time) and then only the repositories it shows: a page costs the same with
10 or 10,000 repositories. Access: `gate.Gate`, one call per handler (see there).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import web

from k3sreg import errors
from k3sreg.auth.model import DELETE, PULL, repository_access
from k3sreg.config.web import WebSettings
from k3sreg.oci.names import is_valid_tag, name_problem
from k3sreg.server import metrics, stats
from k3sreg.server.context import Context
from k3sreg.server.webui import render
from k3sreg.server.webui.gate import CSRF_FIELD, Gate, OpenGate, csrf_ok, csrf_token, set_csrf_cookie
from k3sreg.server.webui.plot import savings_svg
from k3sreg.storage.browse import Browser

PER_PAGE = 50
CATALOG_TTL = 5.0
_STATIC = {"page.css": "text/css", "page.js": "text/javascript", "icon.svg": "image/svg+xml"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CatalogCache:
    """The repository names, listed at most once per `ttl` seconds however many pages ask."""

    def __init__(self, list_names: Callable[[], Awaitable[list[str]]], ttl: float = CATALOG_TTL):
        self._list, self._ttl = list_names, ttl
        self._names: list[str] = []
        self._lower: list[str] = []
        self._at = -1e18
        self._lock = asyncio.Lock()

    async def names(self) -> tuple[list[str], list[str]]:
        """(names, the same lower-cased) in catalog order."""
        async with self._lock:
            if time.monotonic() - self._at > self._ttl:
                self._names = await self._list()
                self._lower = [n.lower() for n in self._names]
                self._at = time.monotonic()
            return self._names, self._lower

    def forget(self) -> None:
        self._at = -1e18


class WebPage:
    """The page's handlers, for one application."""

    def __init__(self, settings: WebSettings, ctx: Context, gate: Gate, history: stats.SavingsHistory,
                 upstreams: list[str], root: str | None):
        self.base = "" if settings.path == "/" else settings.path
        self.ctx, self.gate, self.history, self.upstreams, self.root = ctx, gate, history, upstreams, root
        self.browser = Browser(ctx.store.manifests)
        self.catalog = CatalogCache(ctx.store.catalog)
        files = resources.files("k3sreg.server.webui") / "static"
        self.static = {name: (files / name).read_bytes() for name in _STATIC}

    def frame(self, request: web.Request) -> render.Frame:
        if self.ctx.host:
            registry = urlsplit(self.ctx.host).netloc.rsplit("@", 1)[-1]
        else:
            registry = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        return render.Frame(self.base, registry)

    def routes(self, app: web.Application) -> None:
        base = self.base
        app.router.add_get(f"{base}/", self._wrap(self.index))
        if base:
            app.router.add_get(base, self._wrap(self.to_index))
        app.router.add_get(base + "/repositories/{name:.+}", self._wrap(self.repository))
        app.router.add_post(base + "/_delete", self._wrap(self.delete))
        app.router.add_get(base + "/_static/{file}", self._wrap(self.static_file))

    def _wrap(self, handler: Handler) -> Handler:
        """Count the request as `web`, add the page's headers, and show errors as a page (keeping their headers,
        such as the login challenge)."""
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            request[metrics.ROUTE_KEY] = "web"
            try:
                resp = await handler(request)
            except errors.RegistryError as e:
                body = render.page(self.frame(request), "Error",
                                   f"<h1>{render.esc(e.status)}</h1>{render.message(e.message, 'error')}")
                resp = web.Response(status=e.status, text=body, content_type="text/html", headers=e.headers)
            for k, v in _HEADERS.items():
                resp.headers.setdefault(k, v)
            return resp

        return run

    async def to_index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(f"{self.base}/")

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name not in self.static:
            raise errors.NameUnknown(f"no such file: {name}")
        return web.Response(body=self.static[name], content_type=_STATIC[name],
                            headers={"Cache-Control": "max-age=3600"})

    async def index(self, request: web.Request) -> web.StreamResponse:
        visible = await self.gate.check(request, ())
        query = request.query.get("q", "").strip()[:200]
        names, lower = await self.catalog.names()
        needle = query.lower()
        shown = [n for n, low in zip(names, lower, strict=True) if needle in low and visible(n)]
        pages = render.Pages.of(len(shown), PER_PAGE, _number(request.query.get("page")))
        chosen = shown[(pages.number - 1) * PER_PAGE: pages.number * PER_PAGE]
        summaries = await self.ctx.store.run(lambda: [self.browser.summary(n) for n in chosen])
        frame, now = self.frame(request), time.time()
        listing = render.repo_list(frame, summaries, pages, query, now)
        if request.query.get("fragment") == "repos":
            return web.Response(text=listing, content_type="text/html")
        totals = stats.totals(self.upstreams)
        plot = ""
        if self.upstreams:
            plot = ('<section><h2>Bytes saved by the cache</h2>'
                    f'{savings_svg(self.history.points(), self.upstreams)}</section>')
        visible_count = sum(1 for n in names if visible(n))
        body = (render.cards(totals, visible_count, self._filesystem()) + render.upstreams(totals) + plot +
                f'<section><h2>Repositories</h2>{render.search_box(frame, query)}{listing}</section>')
        return web.Response(text=render.page(frame, "Registry", body), content_type="text/html")

    async def repository(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name_problem(name) is not None:
            raise errors.NameUnknown(f"no repository is named {name!r}")
        await self.gate.check(request, repository_access(name, PULL))
        summary = await self.ctx.store.run(self.browser.summary, name)
        if not summary.tags and summary.changed is None:
            raise errors.NameUnknown(f"no repository is named {name!r}")
        query = request.query.get("q", "").strip()[:128]
        tags = [t for t in summary.tags if query.lower() in t.lower()]
        pages = render.Pages.of(len(tags), PER_PAGE, _number(request.query.get("page")))
        chosen = tags[(pages.number - 1) * PER_PAGE: pages.number * PER_PAGE]
        rows = await self.ctx.store.run(self.browser.tag_rows, name, chosen)
        frame = self.frame(request)
        token, new = csrf_token(request)
        may_delete = await self._may_delete(request, name)
        cached = self._upstream_of(name)
        heading = f"<h1>{render.esc(name)}</h1>"
        if cached:
            heading += render.message(f"Cached from upstream {cached}: pulls refresh it, deletes are not offered.")
        deleted = request.query.get("deleted")
        if deleted:
            heading += render.message(f"Tag {deleted} was deleted.")
        table = render.tag_table(frame, name, rows, time.time(), token if may_delete else None)
        pager = render.pager(pages, lambda n: frame.repo_url(name, q=query, page=n))
        body = (f'{heading}<p class="count">{len(tags):,} tag{"" if len(tags) == 1 else "s"}</p>'
                f"{table}{pager}")
        resp = web.Response(text=render.page(frame, name, body), content_type="text/html")
        if new and may_delete:
            set_csrf_cookie(resp, token, self.base or "/", request.secure)
        return resp

    async def delete(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name, tag, token = (str(form.get(k, "")) for k in ("repository", "tag", CSRF_FIELD))
        if name_problem(name) is not None or not is_valid_tag(tag):
            raise errors.NameInvalid("the form names no valid repository and tag")
        await self.gate.check(request, repository_access(name, DELETE))
        if not csrf_ok(request, token):
            raise errors.Denied("the form is stale or came from another site: reload the page and try again")
        self.ctx.check_delete()
        if self._upstream_of(name):
            raise errors.Unsupported(f"{name} is cached from an upstream: its tags are not deleted here")
        await self.ctx.store.delete_manifest(name, tag)
        self.catalog.forget()
        raise web.HTTPSeeOther(self.frame(request).repo_url(name, deleted=tag))

    async def _may_delete(self, request: web.Request, name: str) -> bool:
        if not self.ctx.delete_enabled or self.ctx.read_only or self._upstream_of(name):
            return False
        return await self.gate.may(request, repository_access(name, DELETE))

    def _upstream_of(self, name: str) -> str | None:
        """The upstream whose cache repository `name` is, or None for a local one."""
        try:
            target = self.ctx.resolve(name, None)
        except errors.RegistryError:
            return None
        return target.upstream.name if target.upstream is not None and not target.default else None

    def _filesystem(self) -> tuple[int, int] | None:
        if self.root is None:
            return None
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def _number(raw: str | None) -> int:
    try:
        return max(1, int(raw or "1"))
    except ValueError:
        return 1


def install(app: web.Application, settings: WebSettings, ctx: Context, history: stats.SavingsHistory,
            upstreams: list[str], root: str | None, gate: Gate | None = None) -> None:
    """Serve the page on `app` at `settings.path`, asking `gate` (default: no access control) who may do what."""
    WebPage(settings, ctx, gate or OpenGate(), history, upstreams, root).routes(app)
