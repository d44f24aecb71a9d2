"""`access:` rules and `auth.token.builtin`: loaded, and every mistake told with its key path and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from k3sreg.config import parse_settings
from k3sreg.errors import ConfigError

HTPASSWD = {"htpasswd": {"realm": "r", "path": "/etc/htpasswd"}}
BUILTIN = {"token": {"realm": "https://reg/auth/token", "service": "reg", "issuer": "k3sreg",
                     "builtin": {"htpasswd": "/etc/htpasswd"}}}


def load(**sections: Any) -> Any:
    raw = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": "/srv/reg"}}, **sections}
    return parse_settings(raw, {})


def problems(**sections: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(**sections)
    return info.value.problems


def test_rules_load() -> None:
    """The issue's example loads; a single string counts as a one-item list."""
    s = load(auth=HTPASSWD, access=[
        {"users": ["ci"], "repositories": ["team/**"], "actions": ["pull", "push"]},
        {"anonymous": True, "repositories": "public/**", "actions": "pull"},
    ])
    assert s.access[1].repositories == ["public/**"] and s.access[1].anonymous


@pytest.mark.parametrize(("rule", "message"), [
    ({"users": ["ci"], "repositories": ["Team/**"], "actions": ["pull"]}, "access[0].repositories: repository "
     "pattern 'Team/**' has capitals"),
    ({"users": ["ci"], "repositories": ["a**"], "actions": ["pull"]}, "'**' must be a whole component"),
    ({"users": ["ci"], "repositories": ["a"], "actions": ["pul"]}, "access[0].actions: unknown action 'pul'"),
    ({"repositories": ["a"], "actions": ["pull"]}, "a rule needs 'users'"),
    ({"users": ["ci"], "repositories": [], "actions": ["pull"]}, "list at least one repository"),
    ({"users": ["ci"], "repository": ["a"], "actions": ["pull"]}, "did you mean 'repositories'"),
])
def test_rule_problems(rule: dict[str, Any], message: str) -> None:
    """Bad globs, unknown actions, a rule for nobody, a misspelt key: each one line with the fix."""
    found = problems(auth=HTPASSWD, access=[rule])
    assert any(message in p for p in found), found


def test_rules_need_auth() -> None:
    """Rules without an access controller would protect nothing; refused."""
    found = problems(access=[{"users": ["ci"], "repositories": ["a"], "actions": ["pull"]}])
    assert any("access: rules need auth.htpasswd or auth.token" in p for p in found)


def test_builtin_token_service() -> None:
    """builtin makes rootcertbundle/jwks optional; the keyring defaults under the storage root; 5m tokens."""
    s = load(auth=BUILTIN)
    builtin = s.auth.token.builtin
    assert builtin.expiration == 300 and builtin.keyring_path("/srv/reg") == "/srv/reg/k3sreg/token-keys.json"


@pytest.mark.parametrize(("over", "message"), [
    ({"signingcert": "/c.pem"}, "set 'signingkey' too"),
    ({"signingkey": "/k.pem", "keyring": "/r.json"}, "exclude each other"),
    ({"expiration": "1s"}, "between 10s and 24h"),
    ({"expiration": "48h"}, "between 10s and 24h"),
])
def test_builtin_problems(over: dict[str, Any], message: str) -> None:
    """Inconsistent builtin keys are refused with the fix."""
    auth = {"token": {**BUILTIN["token"], "builtin": {"htpasswd": "/h", **over}}}
    assert any(message in p for p in problems(auth=auth))


def test_builtin_without_a_place_for_keys() -> None:
    """With in-memory storage there is no root for the keyring: say which key to set."""
    with pytest.raises(ConfigError) as info:
        parse_settings({"version": "0.1", "storage": "inmemory", "auth": BUILTIN}, {})
    assert any("set 'keyring'" in p for p in info.value.problems)


def test_builtin_with_its_own_signing_key_needs_no_keyring() -> None:
    """A builtin service given `signingkey` keeps no generated keys: it loads, whatever the storage."""
    auth = {"token": {**BUILTIN["token"], "builtin": {"htpasswd": "/h", "signingkey": "/k.pem"}}}
    assert load(auth=auth).auth.token.builtin.signingkey == "/k.pem"
    s = parse_settings({"version": "0.1", "storage": "inmemory", "auth": auth}, {})
    assert s.auth is not None and s.auth.token is not None


def test_builtin_realm_is_optional() -> None:
    """With builtin, `realm` may be left out (the registry advertises its own /auth/token); without, it is
    required."""
    builtin = {"token": {"service": "reg", "issuer": "k3sreg", "builtin": {"htpasswd": "/h"}}}
    assert load(auth=builtin).auth.token.realm == ""
    external = {"token": {"service": "reg", "issuer": "k3sreg", "rootcertbundle": "/b.pem"}}
    assert any("'realm' is required" in p for p in problems(auth=external))


def test_signing_algorithms_are_checked() -> None:
    """Unknown names are refused (as Distribution does); builtin keyrings need ES256 among them."""
    auth = {"token": {**BUILTIN["token"], "signingalgorithms": ["ES256", "XX999"]}}
    assert any("unknown algorithm 'XX999'" in p for p in problems(auth=auth))
    auth = {"token": {**BUILTIN["token"], "signingalgorithms": ["RS256"]}}
    assert any("add it to 'signingalgorithms'" in p for p in problems(auth=auth))
    external = {"token": {"realm": "r", "service": "s", "issuer": "i", "rootcertbundle": "/b.pem",
                          "signingalgorithms": ["RS256", "HS256"]}}
    assert load(auth=external).auth.token.signingalgorithms == ["RS256", "HS256"]
