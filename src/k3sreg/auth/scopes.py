"""Scopes as the Docker token protocol writes them, and what each registry request needs, as one table.

A scope is `type:name:action[,action...]`: `repository:team/app:pull,push`, `registry:catalog:*`. The name
sits between the first and the last colon, so a name with a registry host and port in it
(`repository:10.0.0.5:5000/app:pull`) reads right. A type may carry a class (`repository(plugin)`), which is
dropped as Distribution drops it.

`REQUIRED` is the table of what each kind of request needs, checked against Distribution 2.8
(`registry/handlers/app.go`): GET/HEAD need pull; POST/PUT/PATCH need pull and push; DELETE needs delete
(cancelling an upload too); a blob upload with `from=` also needs pull on that repository; the catalog needs
`registry:catalog:*`; `/v2/` needs only a caller who proved who they are. A method the table does not list for
a route needs every action (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import Enum

from k3sreg.auth.model import CATALOG, DELETE, PULL, PUSH, REPOSITORY_ACTIONS, Access, repository_access

_TYPE = re.compile(r"^([a-z0-9]+)(?:\([a-z0-9]+\))?$")
_ACTION = re.compile(r"^(?:[a-z]+|\*)$")
MAX_SCOPES = 32
"""Most scopes one token request may ask for."""


class ScopeError(ValueError):
    """A scope string that is not `type:name:actions`; the message says which and why."""


def parse_scope(text: str) -> tuple[Access, ...]:
    """The `Access` items one scope string asks for. Raises ScopeError when it is malformed."""
    head, sep, actions = text.rpartition(":")
    kind, sep2, name = head.partition(":")
    match = _TYPE.match(kind)
    if not sep or not sep2 or not name or match is None:
        raise ScopeError(f"scope {text[:200]!r} is not type:name:actions")
    wanted = [a for a in actions.split(",") if a]
    if not wanted or not all(_ACTION.match(a) for a in wanted):
        raise ScopeError(f"scope {text[:200]!r} has no valid actions")
    return tuple(Access(match.group(1), name, a) for a in dict.fromkeys(wanted))


def parse_scopes(values: Iterable[str]) -> tuple[Access, ...]:
    """Every `Access` asked for by `scope` parameters (each may hold several scopes separated by spaces)."""
    found: dict[Access, None] = {}
    texts = [t for v in values for t in v.split()]
    if len(texts) > MAX_SCOPES:
        raise ScopeError(f"{len(texts)} scopes asked for; at most {MAX_SCOPES}")
    for text in texts:
        found.update(dict.fromkeys(parse_scope(text)))
    return tuple(found)


def _action_order(action: str) -> int:
    return REPOSITORY_ACTIONS.index(action) if action in REPOSITORY_ACTIONS else len(REPOSITORY_ACTIONS)


def _by_resource(items: Iterable[Access]) -> dict[tuple[str, str], list[str]]:
    """(type, name) -> actions, resources in first-seen order, actions as pull, push, delete, then others."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for item in items:
        actions = grouped.setdefault((item.type, item.name), [])
        if item.action not in actions:
            actions.append(item.action)
    return {key: sorted(actions, key=_action_order) for key, actions in grouped.items()}


def format_scopes(items: Sequence[Access]) -> str:
    """Scope strings for `items`, one per resource in first-seen order, space-separated: `repository:a:pull,push`."""
    return " ".join(f"{t}:{n}:{','.join(actions)}" for (t, n), actions in _by_resource(items).items())


def access_claim(items: Iterable[Access]) -> list[dict[str, object]]:
    """The token `access` claim for `items`: `[{"type", "name", "actions"}]`, one entry per resource."""
    return [{"type": t, "name": n, "actions": actions} for (t, n), actions in _by_resource(items).items()]


class Route(Enum):
    """The kinds of registry request, as the server's router names them."""

    BASE = "base"  # /v2/
    CATALOG = "catalog"  # /v2/_catalog
    TAGS = "tags"  # /v2/<name>/tags/list
    MANIFEST = "manifest"  # /v2/<name>/manifests/<reference>
    BLOB = "blob"  # /v2/<name>/blobs/<digest>
    UPLOAD_START = "upload-start"  # /v2/<name>/blobs/uploads/  (POST; `from=` asks for a mount)
    UPLOAD = "upload"  # /v2/<name>/blobs/uploads/<uuid>
    REFERRERS = "referrers"  # /v2/<name>/referrers/<digest>


_READ = (PULL,)
_WRITE = (PULL, PUSH)
_DELETE = (DELETE,)
REQUIRED: dict[Route, dict[str, tuple[str, ...]]] = {
    # route             method -> actions on the request's repository
    Route.TAGS:         {"GET": _READ, "HEAD": _READ},
    Route.MANIFEST:     {"GET": _READ, "HEAD": _READ, "PUT": _WRITE, "DELETE": _DELETE},
    Route.BLOB:         {"GET": _READ, "HEAD": _READ, "DELETE": _DELETE},
    Route.UPLOAD_START: {"POST": _WRITE},
    Route.UPLOAD:       {"GET": _READ, "HEAD": _READ, "PATCH": _WRITE, "PUT": _WRITE, "DELETE": _DELETE},
    Route.REFERRERS:    {"GET": _READ, "HEAD": _READ},
}
"""What each repository route needs, by method (see the module docstring for the source of each row)."""


def required_access(method: str, route: Route, repository: str | None = None,
                    mount_from: str | None = None) -> tuple[Access, ...]:
    """What a request needs: empty for `/v2/` (proving who you are is enough), the catalog scope for the
    catalog, else the table's actions on `repository`, plus pull on `mount_from` when a mount names one.

    `repository` is the name the request acts on as stored (with the upstream prefix for a pull-through name).
    """
    method = method.upper()
    if route is Route.BASE:
        return ()
    if route is Route.CATALOG:
        return (CATALOG,)
    if not repository:
        raise ValueError(f"{route.value} requests name a repository")
    actions = REQUIRED[route].get(method, REPOSITORY_ACTIONS)
    need = repository_access(repository, *actions)
    if mount_from and route is Route.UPLOAD_START:
        need += repository_access(mount_from, PULL)
    return need

