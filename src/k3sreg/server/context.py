"""What every handler needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from k3sreg import errors
from k3sreg.server.routes import Route
from k3sreg.storage.access import AccessClock
from k3sreg.storage.repository import LocalRepository, Repository
from k3sreg.storage.store import Store
from k3sreg.upstream.hub import ProxyHub
from k3sreg.upstream.routing import Target


@dataclass(frozen=True, slots=True)
class Limits:
    """The `limits` section, in the units the handlers use (its defaults live in config/limits.py)."""

    manifest_bytes: int
    blob_bytes: int
    body_timeout: float


@dataclass(slots=True)
class Context:
    """The store plus the policy knobs of the http and storage sections."""

    store: Store
    limits: Limits
    catalog_max: int                 # catalog.maxentries: the largest page of /v2/_catalog
    tags_max: int                    # tags.maxtags: the largest page of tags/list when `n` is given
    delete_enabled: bool = False
    read_only: bool = False
    host: str | None = None          # http.host: the external URL for Location headers
    relative_urls: bool = False
    proxy: ProxyHub | None = None
    mount_anywhere: bool = True      # a mount without `from` may link any blob the store holds (not with auth)
    access: AccessClock | None = None  # last pulls of local manifests (the web page shows them)

    def resolve(self, name: str, ns: str | None) -> Target:
        return self.proxy.resolve(name, ns) if self.proxy else Target(name)

    def repository(self, target: Target) -> Repository:
        return self.proxy.repository(target) if self.proxy else LocalRepository(self.store, target.cache_repo)

    def check_delete(self) -> None:
        if not self.delete_enabled:
            raise errors.Unsupported("deletes are disabled (set storage.delete.enabled: true)")
        self.check_write()

    def check_write(self) -> None:
        if self.read_only:
            raise errors.Unsupported("the registry is in read-only mode (storage.maintenance.readonly)")

    def url(self, request: web.Request, path: str) -> str:
        """An URL for a Location header: absolute as Distribution sends it, unless relativeurls is set."""
        if self.relative_urls:
            return path
        if self.host:
            return self.host.rstrip("/") + path
        proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        return f"{proto}://{host}{path}"


CONTEXT: web.AppKey[Context] = web.AppKey("k3sreg_context", Context)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request's resource: `repo` is the local repository name, `view` the reads of it (maybe proxied)."""

    route: Route
    repo: str
    view: Repository
    proxied: bool
