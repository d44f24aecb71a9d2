"""Upstream auth without a network: WWW-Authenticate parsing, scopes, token answers and cache, who gets what."""

from __future__ import annotations

import asyncio
import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k3sreg.client.auth import (
    DEFAULT_TOKEN_LIFETIME,
    Authenticator,
    BearerRealm,
    Challenge,
    TokenCache,
    TokenError,
    basic_authorization,
    bearer_realm,
    merge_scopes,
    parse_challenges,
    parse_token_response,
    pull_scope,
    push_scope,
    token_query,
)

HUB = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'


def test_docker_hub_challenge() -> None:
    """Docker Hub's challenge gives the realm, service and scope."""
    assert parse_challenges(HUB) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/nginx:pull",
            },
        )
    ]


def test_quoted_commas_and_escapes() -> None:
    """Commas, spaces and escaped quotes inside quoted strings stay in the value."""
    header = (
        r'Bearer realm="https://a.example/t?x=1,2", scope="repository:a/b:pull,push repository:c:pull", '
        r'error="say \"no\""'
    )
    (challenge,) = parse_challenges(header)
    assert challenge.params == {
        "realm": "https://a.example/t?x=1,2",
        "scope": "repository:a/b:pull,push repository:c:pull",
        "error": 'say "no"',
    }


def test_several_challenges_in_one_header_and_across_headers() -> None:
    """Challenges are split at each new scheme, in one header value and across several."""
    got = parse_challenges(
        ['Basic realm="Registry Realm", Bearer realm="https://t.example/token",service=reg', "Negotiate"]
    )
    assert [c.scheme for c in got] == ["basic", "bearer", "negotiate"]
    assert got[0].params == {"realm": "Registry Realm"}
    assert got[1].params == {"realm": "https://t.example/token", "service": "reg"}


def test_case_spaces_and_unquoted_urls() -> None:
    """Scheme and keys are case-insensitive, spaces around '=' are allowed, unquoted URLs are taken whole."""
    (challenge,) = parse_challenges("BEARER Realm = https://auth.example/token , Service=svc")
    assert challenge == Challenge("bearer", {"realm": "https://auth.example/token", "service": "svc"})


def test_token68_and_bare_scheme() -> None:
    """A token68 value and a scheme without parameters are both kept."""
    assert parse_challenges("Negotiate abc+/==, Basic") == [
        Challenge("negotiate", {}, "abc+/=="),
        Challenge("basic", {}),
    ]


@pytest.mark.parametrize("header", ["", "   ", ",", 'Bearer realm="unterminated', "=== junk"])
def test_malformed_headers_never_raise(header: str) -> None:
    """Garbage gives what could be read (maybe nothing), never an exception."""
    for challenge in parse_challenges(header):
        assert challenge.scheme


def test_empty_list_elements_are_skipped() -> None:
    """Doubled commas between parameters do not lose the parameters after them."""
    (challenge,) = parse_challenges('Bearer realm="https://t.example/token",, ,service="svc"')
    assert challenge.params == {"realm": "https://t.example/token", "service": "svc"}


@given(st.text(max_size=200))
def test_any_text_parses_without_error(header: str) -> None:
    """Arbitrary header text never raises and yields only named schemes."""
    assert all(c.scheme for c in parse_challenges(header))


_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
_KEY = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)


@given(st.dictionaries(_KEY, _VALUE, min_size=1, max_size=5))
def test_quoted_parameters_round_trip(params: dict[str, str]) -> None:
    """Any printable values, quoted with escapes, parse back to themselves."""

    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = "Bearer " + ", ".join(f"{k}={quote(v)}" for k, v in params.items())
    assert parse_challenges(header) == [Challenge("bearer", params)]


def test_bearer_realm_and_scope_building() -> None:
    """A Bearer challenge names the token service; the pull scope and token query follow Docker's token spec."""
    (challenge,) = parse_challenges(HUB)
    realm = bearer_realm(challenge)
    assert realm == BearerRealm("https://auth.docker.io/token", "registry.docker.io")
    assert bearer_realm(Challenge("basic", {"realm": "x"})) is None
    assert bearer_realm(Challenge("bearer", {})) is None
    assert pull_scope("library/nginx") == "repository:library/nginx:pull"
    assert token_query(realm, "repository:a:pull repository:b:pull") == [
        ("service", "registry.docker.io"),
        ("scope", "repository:a:pull"),
        ("scope", "repository:b:pull"),
    ]
    assert token_query(BearerRealm("https://t.example", ""), "") == []


def test_token_answers() -> None:
    """`token` or `access_token`, `expires_in` honoured, 60 s when absent or unusable."""
    assert parse_token_response(b'{"token": "t1", "expires_in": 300}') == ("t1", 300.0)
    assert parse_token_response(b'{"access_token": "t2"}') == ("t2", DEFAULT_TOKEN_LIFETIME)
    assert parse_token_response(b'{"token": "t3", "expires_in": "soon"}') == ("t3", DEFAULT_TOKEN_LIFETIME)
    assert parse_token_response(b'{"token": "", "access_token": "t4", "expires_in": 0}') == ("t4", 60.0)
    for bad in (b"not json", b"[1]", b'{"expires_in": 5}'):
        with pytest.raises(TokenError):
            parse_token_response(bad)


def test_token_cache_expiry() -> None:
    """A token is served until shortly before it expires, then forgotten; a refused token is dropped."""
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    key = (BearerRealm("https://t.example/token", "svc"), "repository:a:pull")
    cache.put(key, "tok", 300)
    now[0] += 289.9
    assert cache.get(key) == "tok"
    now[0] += 0.2
    assert cache.get(key) is None
    cache.put(key, "minute", 60)
    now[0] += 49.9
    assert cache.get(key) == "minute"
    now[0] += 0.2
    assert cache.get(key) is None
    cache.put(key, "short", 4)
    now[0] += 2.9
    assert cache.get(key) == "short"
    now[0] += 0.2
    assert cache.get(key) is None
    cache.put(key, "new", 300)
    cache.drop(key, "old")
    assert cache.get(key) == "new"
    cache.drop(key, "new")
    assert cache.get(key) is None


def test_token_cache_keys_are_per_scope_and_realm() -> None:
    """Tokens of other scopes or other realms are not shared."""
    cache = TokenCache()
    realm = BearerRealm("https://t.example/token", "svc")
    cache.put((realm, "repository:a:pull"), "a", 300)
    assert cache.get((realm, "repository:b:pull")) is None
    assert cache.get((BearerRealm("https://other.example/token", "svc"), "repository:a:pull")) is None


@pytest.mark.parametrize(
    ("challenged", "own", "asked"),
    [
        ("repository:a:pull", pull_scope("a"), "repository:a:pull"),
        ("repository:a:pull", push_scope("a"), "repository:a:pull repository:a:pull,push"),
        ("", push_scope("a"), "repository:a:pull,push"),
        ("repository:a:pull,push repository:b:pull", f"{push_scope('a')} {pull_scope('b')}",
         "repository:a:pull,push repository:b:pull"),
    ],
)
def test_token_scopes_after_a_challenge(challenged: str, own: str, asked: str) -> None:
    """The token is asked for the challenge's scopes and the request's own that the challenge lacks."""
    assert merge_scopes(challenged, own) == asked


def test_basic_authorization() -> None:
    """Basic credentials are base64 of user:password, colons in the password kept."""
    value = basic_authorization("bob", "pa:ss")
    assert value.startswith("Basic ")
    assert base64.b64decode(value[6:]) == b"bob:pa:ss"


OWN, OTHER = "https://registry.example", "https://mirror.example"
OWN_REALM = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'


class TokenLog:
    """A token service stand-in that hands out numbered tokens and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str | None]] = []

    async def __call__(self, realm: BearerRealm, scope: str, credentials: str | None) -> tuple[str, float]:
        await asyncio.sleep(0)
        self.asked.append((realm.realm, scope, credentials))
        return f"t{len(self.asked)}", 300.0


async def test_bearer_flow_fetches_once_and_reuses() -> None:
    """A Bearer challenge from the upstream fetches one token with the credentials; later requests reuse it."""
    log = TokenLog()
    auth = Authenticator(OWN, "bob", "pw", log)
    assert await auth.authorization(OWN, pull_scope("a/b")) is None
    assert await auth.answer(parse_challenges(OWN_REALM), OWN, pull_scope("a/b"), None)
    assert await auth.authorization(OWN, pull_scope("a/b")) == "Bearer t1"
    assert await auth.authorization(OWN, pull_scope("a/b")) == "Bearer t1"
    assert log.asked == [("https://auth.example/token", "repository:a/b:pull", basic_authorization("bob", "pw"))]
    # Another repository of the same upstream gets its token up front, without a challenge round trip.
    assert await auth.authorization(OWN, pull_scope("c")) == "Bearer t2"
    assert log.asked[-1][1] == "repository:c:pull"


async def test_refused_token_is_replaced_once_for_concurrent_requests() -> None:
    """Eight requests refused with the same token fetch one replacement between them."""
    log = TokenLog()
    auth = Authenticator(OWN, "", "", log)
    await auth.answer(parse_challenges(OWN_REALM), OWN, pull_scope("a/b"), None)
    answers = await asyncio.gather(
        *(auth.answer(parse_challenges(OWN_REALM), OWN, pull_scope("a/b"), "Bearer t1") for _ in range(8))
    )
    assert all(answers)
    assert len(log.asked) == 2
    assert await auth.authorization(OWN, pull_scope("a/b")) == "Bearer t2"


async def test_credentials_never_go_to_another_origin() -> None:
    """Another host's Bearer challenge gets an anonymous token for that host only; its Basic challenge, nothing."""
    log = TokenLog()
    auth = Authenticator(OWN, "bob", "pw", log)
    other = 'Bearer realm="https://mirror.example/token",service="mirror"'
    assert await auth.answer(parse_challenges(other), OTHER, pull_scope("a/b"), None)
    assert log.asked == [("https://mirror.example/token", "repository:a/b:pull", None)]
    assert await auth.authorization(OTHER, pull_scope("a/b")) == "Bearer t1"
    assert await auth.authorization(OWN, pull_scope("a/b")) is None
    assert not await auth.answer(parse_challenges('Basic realm="x"'), "https://cdn.example", pull_scope("a/b"), None)


async def test_basic_challenge() -> None:
    """A Basic challenge is answered with the credentials, once; without credentials it cannot be."""
    auth = Authenticator(OWN, "bob", "pw", TokenLog())
    basic = basic_authorization("bob", "pw")
    assert await auth.answer(parse_challenges('Basic realm="Registry"'), OWN, pull_scope("a/b"), None)
    assert await auth.authorization(OWN, pull_scope("x")) == basic
    assert not await auth.answer(parse_challenges('Basic realm="Registry"'), OWN, pull_scope("a/b"), basic)
    anonymous = Authenticator(OWN, "", "", TokenLog())
    assert not await anonymous.answer(parse_challenges('Basic realm="Registry"'), OWN, pull_scope("a/b"), None)
