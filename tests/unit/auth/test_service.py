"""The built-in token service: tokens for what the rules allow, verified by the same verifier as any other."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from k3sreg.auth.header import basic_authorization
from k3sreg.auth.htpasswd import HtpasswdFile
from k3sreg.auth.keys import Trust
from k3sreg.auth.model import CATALOG, Access, Principal, Reason
from k3sreg.auth.ratelimit import LoginLimiter
from k3sreg.auth.rules import AccessRules, Rule
from k3sreg.auth.service import TokenService
from k3sreg.auth.signing import KeyRing
from k3sreg.auth.tokens import TokenVerifier
from tests.unit.auth.conftest import OTHER_PASSWORD, PASSWORD, SECRETS

RULES = AccessRules([
    Rule.of(users=["alice"], repositories=["team/**"], actions=["pull", "push"]),
    Rule.of(anonymous=True, repositories=["public/**"], actions=["pull"]),
])


@pytest.fixture
def parts(tmp_path: Path, htpasswd_path: Path) -> tuple[TokenService, TokenVerifier]:
    ring = KeyRing(tmp_path / "keys.json", lifetime=300)
    service = TokenService("k3sreg", "reg", HtpasswdFile(htpasswd_path), RULES, ring,
                           limiter=LoginLimiter(burst=3, rate=0.01))
    return service, TokenVerifier("k3sreg", "reg", Trust(), own=ring)


def grants_of(verifier: TokenVerifier, body: dict[str, object]) -> frozenset[Access]:
    token = body["token"]
    assert isinstance(token, str)
    SECRETS.add(token)
    found = verifier.verify(token)
    assert isinstance(found, Principal) and found.grants is not None
    return found.grants


def test_get_grants_the_intersection(parts: tuple[TokenService, TokenVerifier]) -> None:
    """alice asking pull,push,delete on team/app and pull on other gets pull,push on team/app only."""
    service, verifier = parts
    reply = service.answer_get([basic_authorization("alice", PASSWORD)],
                               {"service": ["reg"], "scope": ["repository:team/app:pull,push,delete",
                                                              "repository:other:pull"], "account": ["alice"]},
                               "10.0.0.1")
    assert reply.status == 200
    assert set(reply.body) == {"token", "access_token", "expires_in", "issued_at"}
    assert reply.body["token"] == reply.body["access_token"] and reply.body["expires_in"] == 300
    assert grants_of(verifier, reply.body) == {Access("repository", "team/app", "pull"),
                                               Access("repository", "team/app", "push")}


def test_anonymous_gets_what_anonymous_rules_allow(parts: tuple[TokenService, TokenVerifier]) -> None:
    """Without credentials: a token granting the anonymous part only (catalog included, as it is filtered)."""
    service, verifier = parts
    reply = service.answer_get([], {"service": ["reg"], "scope": ["repository:public/x:pull,push",
                                                                  "repository:team/app:pull", "registry:catalog:*"]},
                               "10.0.0.1")
    assert reply.status == 200 and reply.user is None
    assert grants_of(verifier, reply.body) == {Access("repository", "public/x", "pull"), CATALOG}


def test_token_lifetime_and_claims(parts: tuple[TokenService, TokenVerifier]) -> None:
    """The token names the user, the service and issuer, and lives `lifetime` seconds."""
    import jwt

    service, _ = parts
    reply = service.answer_get([basic_authorization("alice", PASSWORD)], {"service": ["reg"]}, "c")
    claims = jwt.decode(str(reply.body["token"]), options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["aud"] == "reg" and claims["iss"] == "k3sreg"
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - time.time()) < 5
    assert claims["access"] == []


@pytest.mark.parametrize(("authorization", "reason"), [
    ([basic_authorization("alice", OTHER_PASSWORD)], Reason.WRONG_PASSWORD),
    ([basic_authorization("mallory", PASSWORD)], Reason.UNKNOWN_USER),
    (["Basic " + "bm9jb2xvbg=="], Reason.NO_COLON),
    (["Bearer a.b.c"], Reason.WRONG_SCHEME),
])
def test_bad_credentials_get_401_with_basic_challenge(parts: tuple[TokenService, TokenVerifier],
                                                      authorization: list[str], reason: Reason) -> None:
    """Wrong password, unknown user, malformed Basic, a Bearer token: 401 asking for Basic, no token."""
    service, _ = parts
    reply = service.answer_get(authorization, {"service": ["reg"]}, "10.0.0.9")
    assert reply.status == 401 and "token" not in reply.body
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="reg"'
    assert reply.denial is not None and reply.denial.reason is reason


def test_failed_logins_are_rate_limited(parts: tuple[TokenService, TokenVerifier]) -> None:
    """After the burst, the address gets 429 with Retry-After, even with the right password; others do not."""
    service, _ = parts
    for _ in range(3):
        assert service.answer_get([basic_authorization("alice", "nope")], {}, "10.0.0.7").status == 401
    limited = service.answer_get([basic_authorization("alice", PASSWORD)], {}, "10.0.0.7")
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert service.answer_get([basic_authorization("alice", PASSWORD)], {}, "10.0.0.8").status == 200


@pytest.mark.parametrize(("params", "status"), [
    ({"service": ["other-registry"]}, 400),
    ({"scope": ["repository:team/app"]}, 400),
    ({"account": ["bob"]}, 400),
])
def test_bad_requests(parts: tuple[TokenService, TokenVerifier], params: dict[str, list[str]], status: int) -> None:
    """Another service, a malformed scope, an account that is not the user: 400, no token."""
    service, _ = parts
    reply = service.answer_get([basic_authorization("alice", PASSWORD)], params, "c")
    assert reply.status == status and "token" not in reply.body


def test_oauth_password_grant(parts: tuple[TokenService, TokenVerifier]) -> None:
    """POST grant_type=password answers access_token and the granted scope; other grants are refused."""
    service, verifier = parts
    form = {"grant_type": ["password"], "username": ["alice"], "password": [PASSWORD], "service": ["reg"],
            "scope": ["repository:team/app:pull,push repository:x:pull"], "client_id": ["containerd"]}
    reply = service.answer_post(form, "c")
    assert reply.status == 200 and "token" not in reply.body
    assert reply.body["scope"] == "repository:team/app:pull,push"
    assert grants_of(verifier, {"token": reply.body["access_token"]}) == {
        Access("repository", "team/app", "pull"), Access("repository", "team/app", "push")}
    assert service.answer_post({**form, "password": ["bad"]}, "c").status == 401
    assert service.answer_post({**form, "password": [""]}, "c").status == 401
    assert service.answer_post({"grant_type": ["refresh_token"]}, "c").status == 400
