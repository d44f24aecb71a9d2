"""Parse `/v2/...` paths, and check every name-like input of a request against its grammar, in this one place.

Repository names contain slashes, so the resource is found from the end. Nothing reaches storage or an
upstream before it passed here: repository names (in the path and in `from`), references (a tag or a digest),
blob digests, upload ids, `ns` (a registry host) and `last` (a tag for tags/list, a name for the catalog).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from k3sreg import errors
from k3sreg.config.values import check_registry_host
from k3sreg.oci.digest import Digest, InvalidDigest, is_digest
from k3sreg.oci.names import is_valid_tag, is_valid_upload_id, name_problem

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("catalog", re.compile(r"_catalog")),
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<ref>[^/]*)")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<ref>[^/]+)")),
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<ref>[^/]+)")),
]
_READS = ("GET", "HEAD")


@dataclass(frozen=True, slots=True)
class Route:
    """What a request addresses: a `kind` (base, catalog, tags, manifest, upload, blob, referrers).

    `digest` is the parsed reference of blobs and referrers, and of manifests addressed by digest."""

    kind: str
    name: str = ""
    ref: str = ""
    digest: Digest | None = None


def parse(tail: str, method: str) -> Route:
    """The route for the path after `/v2/`, its name and reference checked; kind "unknown" when none matches."""
    if tail == "":
        return Route("base")
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(tail)
        if m is None:
            continue
        if kind == "catalog":
            return Route(kind)
        name = m["name"]
        problem = name_problem(name)
        if problem is not None:
            raise errors.NameInvalid(problem, detail={"name": name})
        ref = m.groupdict().get("ref") or ""
        if kind in ("blob", "referrers"):
            return Route(kind, name, ref, digest(ref))
        if kind == "manifest":
            return Route(kind, name, ref, _reference(ref, method in _READS))
        if kind == "upload" and ref and not is_valid_upload_id(ref):
            raise errors.BlobUploadUnknown("no upload session has that id", detail={"uuid": ref})
        return Route(kind, name, ref)
    return Route("unknown")


KINDS = ("base", "catalog", "tags", "manifest", "upload", "blob", "referrers", "web", "other")
"""The route kinds requests are counted by (metrics.py): fixed, whatever the paths."""


def kind(path: str) -> str:
    """The route kind of a request path, without checking names; `other` outside the API (the web page's
    handlers mark their requests as `web` themselves)."""
    if path.startswith("/v2/"):
        tail = path[4:]
        if tail == "":
            return "base"
        for name, pattern in _PATTERNS:
            if pattern.fullmatch(tail):
                return name
        return "other"
    return "base" if path == "/v2" else "other"


def digest(value: str) -> Digest:
    """`value` as a digest; DIGEST_INVALID when it is not one k3sreg can verify."""
    try:
        return Digest.parse(value)
    except InvalidDigest as e:
        raise errors.DigestInvalid(str(e), detail={"digest": value}) from None


def _reference(ref: str, reading: bool) -> Digest | None:
    """A manifest reference: a digest (returned), or a tag (None); a read of a tag that cannot exist is
    MANIFEST_UNKNOWN, as in Distribution, whose routes do not match it; a write is TAG_INVALID."""
    if is_digest(ref):
        return digest(ref)
    if is_valid_tag(ref):
        return None
    if reading:
        raise errors.ManifestUnknown(f"no manifest is named {ref!r}", detail={"reference": ref})
    raise errors.TagInvalid(f"invalid tag {ref!r}: up to 128 letters, digits, '_', '.' and '-', not starting "
                            "with '.' or '-'", detail={"tag": ref})


def mount_source(value: str | None) -> str | None:
    """The `from` repository of a cross-repository mount, or None when absent or not a repository name (the
    client then gets a plain upload session, as from Distribution)."""
    if not value or name_problem(value) is not None:
        return None
    return value


def namespace(value: str | None) -> str | None:
    """containerd's `ns` (the registry an image reference names), lower-cased; NAME_INVALID when it is not a
    registry host."""
    if not value:
        return None
    try:
        return check_registry_host(value)
    except ValueError:
        raise errors.NameInvalid(f"ns={value!r} is not a registry host such as docker.io or host:5000",
                                 detail={"ns": value}) from None


def last_tag(value: str | None) -> str | None:
    """The `last` of a tags/list page: a tag, TAG_INVALID otherwise."""
    if value and not is_valid_tag(value):
        raise errors.TagInvalid(f"last={value!r} is not a tag", detail={"last": value})
    return value or None


def last_name(value: str | None) -> str | None:
    """The `last` of a catalog page: a repository name, NAME_INVALID otherwise."""
    if value and name_problem(value) is not None:
        raise errors.NameInvalid(f"last={value!r} is not a repository name", detail={"last": value})
    return value or None
