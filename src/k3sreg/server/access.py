"""Access control on the wire: one middleware asks `AccessController.decide()` about every `/v2` request.

    request ── /v2 or /v2/...? ──no──► handler  (/debug/health, /metrics, /auth/token need no credentials)
                   │ yes
                   ▼
    locate(request): the route, and the repository the request really touches ── parse error: kept for later;
                   ▼                                                              the caller must still be known
    need = required_access(method, route, repository, mount `from`)
                   ▼
    decide: remembered, else inline, or in a thread when a password must go through bcrypt
       ├── Refused ─► one log line (user, client, repository, action, reason) ─► 401 / 403 / 429, OCI body
       └── Allowed ─► the principal and the catalog filter kept on the request ─► handler

Names the rules match: the repository as stored. For the pull-through cache that is the cache name, whatever
way the request chose the upstream: `GET /v2/library/nginx/...?ns=docker.io` and
`GET /v2/docker.io/nginx/...` both touch, and so need pull on, `docker.io/library/nginx`; an `ns` naming this
registry (or none) touches the local name. The handler serves exactly what was located here (the same parse
result is used), so no spelling of a path or of `ns` can be authorized as one repository and served as another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import Counter

from k3sreg import errors
from k3sreg.auth.controller import AccessController, Allowed, Refused, RequestInfo
from k3sreg.auth.model import CATALOG, Access, Denial, Principal, Reason
from k3sreg.auth.scopes import Route, required_access
from k3sreg.auth.setup import AccessSetup
from k3sreg.server import routes

log = logging.getLogger("k3sreg.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Locator = Callable[[web.Request], tuple[routes.Route, str | None]]
"""The route of a `/v2/` request and the repository it touches (None for the base route and the catalog)."""
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("k3sreg_principal", Principal)
"""The `Principal` the request acts for (set on every allowed `/v2` request)."""
CATALOG_FILTER: web.RequestKey[Callable[[str], bool]] = web.RequestKey("k3sreg_catalog_filter")
"""Which repositories the catalog may list to this caller (absent: all)."""
DENIALS = Counter("k3sreg_auth_denials_total", "Requests and token requests refused, by reason", ["reason"])

_SCOPE_ROUTES = {"base": Route.BASE, "catalog": Route.CATALOG, "tags": Route.TAGS, "manifest": Route.MANIFEST,
                 "blob": Route.BLOB, "referrers": Route.REFERRERS}
_STATUS_ERRORS: dict[int, type[errors.RegistryError]] = {401: errors.Unauthorized, 403: errors.Denied,
                                                         429: errors.TooManyRequests}


def needed(request: web.Request, route: routes.Route, repository: str | None) -> tuple[Access, ...]:
    """What the request needs: `auth.scopes.REQUIRED` for its route and method; an unknown path only a known caller."""
    kind = _SCOPE_ROUTES.get(route.kind)
    mount_from = None
    if route.kind == "upload":
        kind = Route.UPLOAD_START if request.method == "POST" and not route.ref else Route.UPLOAD
        if kind is Route.UPLOAD_START and request.query.get("mount"):
            mount_from = routes.mount_source(request.query.get("from"))
    if kind is None:
        return ()
    return required_access(request.method, kind, repository, mount_from)


def client_of(request: web.Request) -> str:
    """The client's address, as the login limiter and the log name it."""
    return request.remote or "-"


def log_denial(request: web.Request, denial: Denial, need: tuple[Access, ...], what: str = "denied") -> None:
    """One line for a refusal: user, client address, repository, action and reason (never a credential).

    A request without credentials is the first step of every client's login, so it is logged at info."""
    DENIALS.labels(denial.reason.name.lower()).inc()
    lacking = denial.missing or need
    repositories = ",".join(dict.fromkeys(a.name for a in lacking)) or "-"
    actions = ",".join(dict.fromkeys(a.action for a in lacking)) or "-"
    level = logging.INFO if denial.reason is Reason.MISSING else logging.WARNING
    log.log(level, "%s: user=%s client=%s repository=%s action=%s reason=%r request=%s %s", what,
            denial.user or "-", client_of(request), repositories, actions, denial.describe(), request.method,
            request.path)


def refusal(refused: Refused) -> errors.RegistryError:
    """The OCI error for a refusal, with its challenge or Retry-After, and Distribution's access detail."""
    detail = [{"Type": a.type, "Class": "", "Name": a.name, "Action": a.action} for a in refused.need] or None
    return _STATUS_ERRORS[refused.status](detail=detail, headers=dict(refused.headers))


def protected(path: str) -> bool:
    """True for the registry API (`/v2` and below): everything else stays open."""
    return path == "/v2" or path.startswith("/v2/")


async def decide(controller: AccessController, request: web.Request, need: tuple[Access, ...]) -> Allowed | Refused:
    """The controller's decision on `request` needing `need`: remembered, else inline, or in a thread when a
    password must go through bcrypt (the event loop never waits for it)."""
    forwarded = request.headers.get("X-Forwarded-Proto") or request.scheme
    info = RequestInfo(request.headers.getall("Authorization", []), need, client_of(request), request.host,
                       forwarded)
    decision: Allowed | Refused | None = controller.remembered(info)
    if decision is not None:
        return decision
    if controller.costly(info):
        return await asyncio.get_running_loop().run_in_executor(None, controller.decide, info)
    return controller.decide(info)


class AccessGate:
    """The web page's gate (server/webui/gate.py) under auth: the same decisions, denials and log lines as the
    API's, so the page shows a caller exactly what the catalog and the repositories' reads would."""

    def __init__(self, setup: AccessSetup):
        self.controller = setup.controller

    async def check(self, request: web.Request, need: Sequence[Access]) -> Callable[[str], bool]:
        wanted = tuple(need)
        decision = await decide(self.controller, request, wanted)
        if isinstance(decision, Refused):
            log_denial(request, decision.denial, wanted)
            raise refusal(decision)
        visible = self.controller.catalog_filter(decision.principal)
        return visible if visible is not None else _everything

    async def may(self, request: web.Request, need: Sequence[Access]) -> bool:
        return isinstance(await decide(self.controller, request, tuple(need)), Allowed)


def _everything(_name: str) -> bool:
    return True


def make_access_middleware(setup: AccessSetup, locate: Locator) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware enforcing `setup` on every `/v2` request (see the module docstring)."""
    controller = setup.controller
    reported = [users.generation for users in setup.users]
    for users in setup.users:
        for problem in users.problems:
            log.warning("htpasswd: %s", problem)

    def report_problems() -> None:
        for i, users in enumerate(setup.users):
            if users.generation != reported[i]:
                reported[i] = users.generation
                for problem in users.problems:
                    log.warning("htpasswd: %s", problem)

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not protected(request.path):
            return await handler(request)
        later: errors.RegistryError | None = None
        try:
            route, repository = locate(request)
            need = needed(request, route, repository)
        except errors.RegistryError as exc:
            later, need = exc, ()
        decision = await decide(controller, request, need)
        if setup.users:
            report_problems()
        if isinstance(decision, Refused):
            log_denial(request, decision.denial, need)
            raise refusal(decision)
        request[PRINCIPAL] = decision.principal
        if need == (CATALOG,):
            visible = controller.catalog_filter(decision.principal)
            if visible is not None:
                request[CATALOG_FILTER] = visible
        if later is not None:
            raise later
        return await handler(request)

    return access


def catalog_filter(request: web.Request) -> Callable[[str], bool] | None:
    """The catalog filter the middleware left on the request, if any."""
    return request.get(CATALOG_FILTER)
