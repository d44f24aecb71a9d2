"""Scopes of the token protocol and the table of what each request needs, checked against Distribution's rule."""

from __future__ import annotations

import pytest

from k3sreg.auth.model import CATALOG, Access
from k3sreg.auth.scopes import (
    REQUIRED,
    Route,
    ScopeError,
    access_claim,
    format_scopes,
    parse_scope,
    parse_scopes,
    required_access,
)


def test_parse_scope_keeps_colons_of_a_host_in_the_name() -> None:
    """The name is between the first and the last colon, so host:port names read right; a class is dropped."""
    assert parse_scope("repository:10.0.0.5:5000/app:pull,push") == (
        Access("repository", "10.0.0.5:5000/app", "pull"), Access("repository", "10.0.0.5:5000/app", "push"))
    assert parse_scope("repository(plugin):x:pull") == (Access("repository", "x", "pull"),)
    assert parse_scope("registry:catalog:*") == (CATALOG,)


@pytest.mark.parametrize("text", ["repository", "repository:a", "repository::pull", "repository:a:",
                                  "Repository:a:pull", "repository:a:pull;push", ":a:pull"])
def test_malformed_scopes_raise(text: str) -> None:
    """What is not type:name:actions is a ScopeError."""
    with pytest.raises(ScopeError):
        parse_scope(text)


def test_several_scopes_in_one_parameter_and_many() -> None:
    """Scopes may come space-separated in one parameter, repeated, and merge; too many are refused."""
    found = parse_scopes(["repository:a:pull repository:b:push", "repository:a:pull,push"])
    assert found == (Access("repository", "a", "pull"), Access("repository", "b", "push"),
                     Access("repository", "a", "push"))
    with pytest.raises(ScopeError):
        parse_scopes(["repository:a:pull"] * 33)


def test_format_scopes_orders_actions_like_the_challenges() -> None:
    """One scope per resource in first-seen order, actions as pull,push,delete."""
    items = [Access("repository", "x", "push"), Access("repository", "x", "pull"), Access("repository", "y", "delete")]
    assert format_scopes(items) == "repository:x:pull,push repository:y:delete"
    assert access_claim(items) == [{"type": "repository", "name": "x", "actions": ["pull", "push"]},
                                   {"type": "repository", "name": "y", "actions": ["delete"]}]


def distribution_rule(method: str) -> tuple[str, ...]:
    """Distribution 2.8's appendAccessRecords, written out independently."""
    return {"GET": ("pull",), "HEAD": ("pull",), "POST": ("pull", "push"), "PUT": ("pull", "push"),
            "PATCH": ("pull", "push"), "DELETE": ("delete",)}[method]


def test_table_agrees_with_distribution_for_every_listed_method() -> None:
    """Each row of REQUIRED asks exactly what Distribution asks for that method."""
    for route, methods in REQUIRED.items():
        for method, actions in methods.items():
            assert actions == distribution_rule(method), (route, method)


@pytest.mark.parametrize(("method", "route", "need"), [
    ("GET", Route.MANIFEST, ["pull"]),
    ("HEAD", Route.MANIFEST, ["pull"]),
    ("head", Route.BLOB, ["pull"]),
    ("PUT", Route.MANIFEST, ["pull", "push"]),
    ("DELETE", Route.MANIFEST, ["delete"]),
    ("DELETE", Route.BLOB, ["delete"]),
    ("POST", Route.UPLOAD_START, ["pull", "push"]),
    ("PATCH", Route.UPLOAD, ["pull", "push"]),
    ("PUT", Route.UPLOAD, ["pull", "push"]),
    ("GET", Route.UPLOAD, ["pull"]),
    ("DELETE", Route.UPLOAD, ["delete"]),
    ("GET", Route.TAGS, ["pull"]),
    ("GET", Route.REFERRERS, ["pull"]),
    ("OPTIONS", Route.MANIFEST, ["pull", "push", "delete"]),
    ("POST", Route.MANIFEST, ["pull", "push", "delete"]),
])
def test_required_access_by_method(method: str, route: Route, need: list[str]) -> None:
    """GET/HEAD pull, writes pull+push, DELETE delete; a method the table lacks needs everything (fail closed)."""
    assert required_access(method, route, "team/app") == tuple(Access("repository", "team/app", a) for a in need)


def test_mount_also_needs_pull_on_the_source() -> None:
    """A cross-repository mount needs pull on `from` as well as push on the target."""
    assert required_access("POST", Route.UPLOAD_START, "b", mount_from="a") == (
        Access("repository", "b", "pull"), Access("repository", "b", "push"), Access("repository", "a", "pull"))


def test_base_needs_only_authentication_and_catalog_its_scope() -> None:
    """`/v2/` needs nothing beyond who you are; the catalog needs registry:catalog:*."""
    assert required_access("GET", Route.BASE) == ()
    assert required_access("GET", Route.CATALOG) == (CATALOG,)


def test_repository_routes_require_a_name() -> None:
    """A repository route without a name is a programming error, not an open door."""
    with pytest.raises(ValueError):
        required_access("GET", Route.MANIFEST, "")
