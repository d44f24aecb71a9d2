"""From the auth and access settings to the controller and the token service: kinds, realms, rules, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k3sreg.auth.controller import Allowed, Refused, RequestInfo
from k3sreg.auth.header import basic_authorization
from k3sreg.auth.scopes import Route, required_access
from k3sreg.auth.setup import build_access, describe, token_realm
from k3sreg.config import parse_settings
from tests.unit.auth.conftest import PASSWORD


def settings(tmp_path: Path, auth: dict[str, Any], access: list[dict[str, Any]] | None = None) -> Any:
    raw = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}}, "auth": auth}
    if access:
        raw["access"] = access
    return parse_settings(raw, {})


def test_realm_of_the_builtin_service(tmp_path: Path, htpasswd_path: Path) -> None:
    """A configured realm is advertised as is; without one, <http.host>/auth/token, else the request's own host;
    autoredirect builds it on the request's host."""
    builtin = {"service": "s", "issuer": "i", "builtin": {"htpasswd": str(htpasswd_path)}}
    token = settings(tmp_path, {"token": builtin}).auth.token
    assert token_realm(token, None) == ("", "/auth/token")
    assert token_realm(token, "https://reg.example.com/") == ("https://reg.example.com/auth/token", None)
    given = settings(tmp_path, {"token": {**builtin, "realm": "https://auth/token"}}).auth.token
    assert token_realm(given, "https://reg.example.com") == ("https://auth/token", None)
    auto = settings(tmp_path, {"token": {**builtin, "realm": "x", "autoredirect": True,
                                         "autoredirectpath": "/t"}}).auth.token
    assert token_realm(auto, None) == ("x", "/t")
    setup = build_access(settings(tmp_path, {"token": builtin}).auth, [], None, str(tmp_path / "data"))
    refused = setup.controller.decide(RequestInfo([], (), "c", "10.0.0.5:30500", "http"))
    assert isinstance(refused, Refused)
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="http://10.0.0.5:30500/auth/token",service="s"'
    assert setup.token_paths == ("/auth/token",)


def test_builtin_without_rules_gives_every_user_everything(tmp_path: Path, htpasswd_path: Path) -> None:
    """No `access` rules: a user of the file gets what it asks, an anonymous caller nothing."""
    auth = {"token": {"service": "s", "issuer": "i", "builtin": {"htpasswd": str(htpasswd_path)}}}
    setup = build_access(settings(tmp_path, auth).auth, [], None, str(tmp_path / "data"))
    assert setup.service is not None
    user = setup.service.answer_get([basic_authorization("alice", PASSWORD)], {"scope": ["repository:x:push"]}, "c")
    anonymous = setup.service.answer_get([], {"scope": ["repository:x:pull"]}, "c")
    assert user.granted and not anonymous.granted


def test_htpasswd_with_an_anonymous_rule_lets_anonymous_callers_pull(tmp_path: Path, htpasswd_path: Path) -> None:
    """An anonymous rule makes the htpasswd controller take callers without credentials, as far as it says."""
    auth = {"htpasswd": {"realm": "r", "path": str(htpasswd_path)}}
    rules = [{"anonymous": True, "repositories": ["public/**"], "actions": ["pull"]}]
    s = settings(tmp_path, auth, rules)
    controller = build_access(s.auth, s.access).controller
    pull = RequestInfo([], required_access("GET", Route.MANIFEST, "public/a"), "c")
    push = RequestInfo([], required_access("PUT", Route.MANIFEST, "public/a"), "c")
    assert isinstance(controller.decide(pull), Allowed) and isinstance(controller.decide(push), Refused)


def test_checks_before_start_generate_no_keys(tmp_path: Path, htpasswd_path: Path) -> None:
    """create_keys=False (serve's check before its workers start) reads every file but makes no keyring."""
    auth = {"token": {"service": "s", "issuer": "i", "builtin": {"htpasswd": str(htpasswd_path)}}}
    setup = build_access(settings(tmp_path, auth).auth, [], None, str(tmp_path / "data"), create_keys=False)
    assert setup.service is None and not (tmp_path / "data").exists()


def test_start_up_line(tmp_path: Path, htpasswd_path: Path) -> None:
    """`serve` names the controller, its files and the number of rules."""
    s = settings(tmp_path, {"htpasswd": {"realm": "r", "path": str(htpasswd_path)}},
                 [{"users": ["*"], "repositories": ["**"], "actions": ["pull"]}])
    assert describe(s.auth, s.access) == f"htpasswd {htpasswd_path} (realm 'r'), 1 access rule"
    s = settings(tmp_path, {"token": {"service": "s", "issuer": "i", "builtin": {"htpasswd": "/h"}}})
    assert "built-in service at /auth/token for the users of /h" in describe(s.auth, s.access)
