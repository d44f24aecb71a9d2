"""Parse `/v2/...` paths. Repository names contain slashes, so the resource is found from the end."""

from __future__ import annotations

import re
from dataclasses import dataclass

from k3sreg import errors
from k3sreg.oci.names import name_problem

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("catalog", re.compile(r"^_catalog$")),
    ("tags", re.compile(r"^(?P<name>.+)/tags/list$")),
    ("manifest", re.compile(r"^(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("upload", re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<ref>[^/]*)$")),
    ("blob", re.compile(r"^(?P<name>.+)/blobs/(?P<ref>[^/]+)$")),
    ("referrers", re.compile(r"^(?P<name>.+)/referrers/(?P<ref>[^/]+)$")),
]


@dataclass(frozen=True, slots=True)
class Route:
    """What a request addresses: a `kind` (base, catalog, tags, manifest, upload, blob, referrers)."""

    kind: str
    name: str = ""
    ref: str = ""


def parse(tail: str) -> Route:
    """The route for the path after `/v2/`; NAME_INVALID for bad names, NotFound as None kind."""
    if tail == "":
        return Route("base")
    for kind, pattern in _PATTERNS:
        m = pattern.match(tail)
        if m is None:
            continue
        name = m.groupdict().get("name", "")
        if kind != "catalog":
            problem = name_problem(name)
            if problem is not None:
                raise errors.NameInvalid(problem, detail={"name": name})
        return Route(kind, name, m.groupdict().get("ref", ""))
    return Route("unknown")
