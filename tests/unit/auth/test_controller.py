"""One request's decision: htpasswd and token controllers, statuses and challenges as Distribution answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3sreg.auth.controller import (
    AccessController,
    Allowed,
    HtpasswdAuthenticator,
    Refused,
    RequestInfo,
    TokenAuthenticator,
)
from k3sreg.auth.header import basic_authorization
from k3sreg.auth.htpasswd import HtpasswdFile
from k3sreg.auth.keys import Trust
from k3sreg.auth.model import Reason
from k3sreg.auth.ratelimit import LoginLimiter
from k3sreg.auth.rules import AccessRules, Rule
from k3sreg.auth.scopes import Route, required_access
from k3sreg.auth.service import TokenService
from k3sreg.auth.signing import KeyRing
from k3sreg.auth.tokens import TokenVerifier
from tests.unit.auth.conftest import OTHER_PASSWORD, PASSWORD, SECRETS

RULES = AccessRules([
    Rule.of(users=["alice"], repositories=["a"], actions=["pull"]),
    Rule.of(users=["bob"], repositories=["**"], actions=["*"]),
    Rule.of(anonymous=True, repositories=["public/**"], actions=["pull"]),
])


def request(method: str, route: Route, repo: str | None, authorization: list[str], client: str = "c",
            mount_from: str | None = None) -> RequestInfo:
    return RequestInfo(authorization, required_access(method, route, repo, mount_from), client, "reg:5000")


@pytest.fixture
def token_setup(tmp_path: Path, htpasswd_path: Path) -> tuple[AccessController, TokenService]:
    ring = KeyRing(tmp_path / "keys.json", lifetime=300)
    service = TokenService("iss", "reg", HtpasswdFile(htpasswd_path), RULES, ring)
    controller = AccessController("token", TokenAuthenticator(TokenVerifier("iss", "reg", Trust(), own=ring)),
                                  "https://reg:5000/auth/token", "reg")
    return controller, service


def bearer(service: TokenService, user: str | None, password: str, *scopes: str) -> list[str]:
    auth = [basic_authorization(user, password)] if user else []
    token = str(service.answer_get(auth, {"scope": list(scopes)}, "c").body["token"])
    SECRETS.add(token)
    return [f"Bearer {token}"]


def test_token_for_the_scope_passes(token_setup: tuple[AccessController, TokenService]) -> None:
    """A pull token for `a` pulls `a`."""
    controller, service = token_setup
    auth = bearer(service, "alice", PASSWORD, "repository:a:pull")
    found = controller.decide(request("GET", Route.MANIFEST, "a", auth))
    assert isinstance(found, Allowed) and found.principal.name == "alice"


@pytest.mark.parametrize(("method", "route", "repo", "mount_from"), [
    ("GET", Route.MANIFEST, "b", None),  # token for a, used on b
    ("PUT", Route.MANIFEST, "a", None),  # pull token used to push
    ("DELETE", Route.MANIFEST, "a", None),  # pull token used to delete
    ("POST", Route.UPLOAD_START, "a", None),
    ("GET", Route.CATALOG, None, None),  # catalog without registry:catalog:*
])
def test_token_beyond_its_grants_is_insufficient_scope(token_setup: tuple[AccessController, TokenService],
                                                       method: str, route: Route, repo: str | None,
                                                       mount_from: str | None) -> None:
    """A token used beyond its access claim gets 401 with error="insufficient_scope" and the needed scope."""
    controller, service = token_setup
    auth = bearer(service, "alice", PASSWORD, "repository:a:pull")
    found = controller.decide(request(method, route, repo, auth, mount_from=mount_from))
    assert isinstance(found, Refused) and found.status == 401
    assert found.denial.reason is Reason.INSUFFICIENT_SCOPE
    challenge = found.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="https://reg:5000/auth/token",service="reg",scope="')
    assert challenge.endswith('error="insufficient_scope"')


def test_mount_needs_pull_on_the_source(token_setup: tuple[AccessController, TokenService]) -> None:
    """Push on the target without pull on `from` is not enough to mount."""
    controller, service = token_setup
    auth = bearer(service, "bob", OTHER_PASSWORD, "repository:b:pull,push")
    assert isinstance(controller.decide(request("POST", Route.UPLOAD_START, "b", auth)), Allowed)
    found = controller.decide(request("POST", Route.UPLOAD_START, "b", auth, mount_from="a"))
    assert isinstance(found, Refused) and 'scope="repository:b:pull,push repository:a:pull"' in \
        found.headers["WWW-Authenticate"]


def test_no_token_gets_the_plain_challenge(token_setup: tuple[AccessController, TokenService]) -> None:
    """Without a token: 401, the scope to ask for, no error; `/v2/` has no scope; Basic is not a token."""
    controller, _ = token_setup
    found = controller.decide(request("GET", Route.TAGS, "a", []))
    assert isinstance(found, Refused) and found.headers["WWW-Authenticate"] == \
        'Bearer realm="https://reg:5000/auth/token",service="reg",scope="repository:a:pull"'
    found = controller.decide(request("GET", Route.BASE, None, [basic_authorization("alice", PASSWORD)]))
    assert isinstance(found, Refused) and found.headers["WWW-Authenticate"] == \
        'Bearer realm="https://reg:5000/auth/token",service="reg"'


def test_bad_token_gets_invalid_token(token_setup: tuple[AccessController, TokenService]) -> None:
    """A token that does not verify gets error="invalid_token"."""
    controller, _ = token_setup
    found = controller.decide(request("GET", Route.BASE, None, ["Bearer e30.e30.e30"]))
    assert isinstance(found, Refused) and found.headers["WWW-Authenticate"].endswith('error="invalid_token"')


def test_base_route_with_any_valid_token(token_setup: tuple[AccessController, TokenService]) -> None:
    """`/v2/` needs only a valid token, even one granting nothing."""
    controller, service = token_setup
    auth = bearer(service, None, "", "repository:secret:pull")
    assert isinstance(controller.decide(request("GET", Route.BASE, None, auth)), Allowed)
    assert isinstance(controller.decide(request("GET", Route.MANIFEST, "secret", auth)), Refused)


def test_autoredirect_realm_follows_the_host() -> None:
    """With autoredirect, the realm is built from the request's Host."""
    controller = AccessController("token", TokenAuthenticator(TokenVerifier("iss", "reg", Trust())), "unused",
                                  "reg", autoredirect_path="/auth/token")
    found = controller.decide(RequestInfo([], (), "c", "10.0.0.5:30500"))
    assert isinstance(found, Refused)
    assert found.headers["WWW-Authenticate"] == 'Bearer realm="https://10.0.0.5:30500/auth/token",service="reg"'


@pytest.fixture
def basic(htpasswd_path: Path) -> HtpasswdFile:
    return HtpasswdFile(htpasswd_path)


def test_htpasswd_without_rules_is_all_or_nothing(basic: HtpasswdFile) -> None:
    """As Distribution: a user who logged in may do everything; anyone else gets 401 with the Basic challenge."""
    controller = AccessController("htpasswd", HtpasswdAuthenticator(basic), "k3sreg")
    ok = [basic_authorization("alice", PASSWORD)]
    assert isinstance(controller.decide(request("DELETE", Route.MANIFEST, "x", ok)), Allowed)
    assert isinstance(controller.decide(request("GET", Route.CATALOG, None, ok)), Allowed)
    for auth in ([], [basic_authorization("alice", "wrong")], ["Bearer a.b.c"], ok + ok):
        found = controller.decide(request("GET", Route.BASE, None, auth))
        assert isinstance(found, Refused) and found.status == 401
        assert found.headers == {"WWW-Authenticate": 'Basic realm="k3sreg"'}


def test_anonymous_without_rules_gets_nothing(basic: HtpasswdFile) -> None:
    """An authenticator that lets anonymous callers through still refuses them everything when no rule says more."""
    controller = AccessController("htpasswd", HtpasswdAuthenticator(basic, anonymous=True), "k3sreg")
    found = controller.decide(request("GET", Route.MANIFEST, "public/x", []))
    assert isinstance(found, Refused) and found.status == 401
    base = controller.decide(request("GET", Route.BASE, None, []))
    assert isinstance(base, Refused) and base.status == 401


def test_base_route_challenges_anonymous_callers_that_rules_let_pull(basic: HtpasswdFile) -> None:
    """`/v2/` answers anonymous callers with the challenge (clients decide there to log in), while their rules
    still let them pull; `Basic :` (containers/image without credentials) counts as anonymous, not as a failure."""
    limiter = LoginLimiter(burst=1, rate=0.01)
    controller = AccessController("htpasswd", HtpasswdAuthenticator(basic, anonymous=True), "k3sreg", rules=RULES,
                                  limiter=limiter)
    for auth in ([], ["Basic Og=="]):
        base = controller.decide(request("GET", Route.BASE, None, auth))
        assert isinstance(base, Refused) and base.headers == {"WWW-Authenticate": 'Basic realm="k3sreg"'}
        assert isinstance(controller.decide(request("GET", Route.MANIFEST, "public/x", auth)), Allowed)
    assert limiter.tracked() == 0
    assert isinstance(controller.decide(request("GET", Route.BASE, None, [basic_authorization("alice", PASSWORD)])),
                      Allowed)


def test_htpasswd_with_rules(basic: HtpasswdFile) -> None:
    """With access rules: a logged-in user beyond them gets 403; anonymous callers get what anonymous rules give."""
    controller = AccessController("htpasswd", HtpasswdAuthenticator(basic, anonymous=True), "k3sreg", rules=RULES)
    alice = [basic_authorization("alice", PASSWORD)]
    assert isinstance(controller.decide(request("GET", Route.MANIFEST, "a", alice)), Allowed)
    pushed = controller.decide(request("PUT", Route.MANIFEST, "a", alice))
    assert isinstance(pushed, Refused) and pushed.status == 403 and pushed.headers == {}
    assert isinstance(controller.decide(request("GET", Route.MANIFEST, "public/x", [])), Allowed)
    anon_push = controller.decide(request("PUT", Route.MANIFEST, "public/x", []))
    assert isinstance(anon_push, Refused) and anon_push.status == 401


def test_htpasswd_failed_logins_turn_into_429(basic: HtpasswdFile) -> None:
    """Past the limit an address gets 429 and Retry-After before its password is checked."""
    limiter = LoginLimiter(burst=2, rate=0.01)
    controller = AccessController("htpasswd", HtpasswdAuthenticator(basic), "k3sreg", limiter=limiter)
    bad = [basic_authorization("alice", "wrong")]
    for _ in range(2):
        assert controller.decide(request("GET", Route.BASE, None, bad, "1.2.3.4")).status == 401  # type: ignore[union-attr]
    found = controller.decide(request("GET", Route.BASE, None, [basic_authorization("alice", PASSWORD)], "1.2.3.4"))
    assert isinstance(found, Refused) and found.status == 429 and found.denial.reason is Reason.RATE_LIMITED
    assert int(found.headers["Retry-After"]) >= 1
    assert isinstance(controller.decide(request("GET", Route.BASE, None, [basic_authorization("alice", PASSWORD)],
                                                "5.6.7.8")), Allowed)


def test_allowed_decisions_are_remembered_while_they_hold(htpasswd_path: Path) -> None:
    """An allowed request is answered from memory the next time (same credentials, same needs), not for other
    needs, not after the htpasswd file changed, and not for an address past the failed-login limit."""
    now = [0.0]
    users = HtpasswdFile(htpasswd_path, clock=lambda: now[0])
    limiter = LoginLimiter(burst=1, rate=0.01)
    controller = AccessController("htpasswd", HtpasswdAuthenticator(users), "k3sreg", rules=RULES, limiter=limiter)
    alice = [basic_authorization("alice", PASSWORD)]
    first = request("GET", Route.MANIFEST, "a", alice, "10.0.0.1")
    assert controller.remembered(first) is None
    assert isinstance(controller.decide(first), Allowed)
    assert isinstance(controller.remembered(first), Allowed)
    assert controller.remembered(request("PUT", Route.MANIFEST, "a", alice, "10.0.0.1")) is None
    assert isinstance(controller.decide(request("GET", Route.MANIFEST, "a", [basic_authorization("alice", "x")],
                                                "10.0.0.2")), Refused)
    assert controller.remembered(request("GET", Route.MANIFEST, "a", alice, "10.0.0.2")) is None  # limited
    assert isinstance(controller.remembered(first), Allowed)
    htpasswd_path.write_bytes(b"# nobody left\n")
    now[0] += 2  # past RECHECK: the file is looked at again
    assert controller.remembered(first) is None
    assert isinstance(controller.decide(first), Refused)


def test_a_remembered_token_decision_ends_with_the_token(token_setup: tuple[AccessController, TokenService],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A decision on a token is not reused past the token's expiry."""
    import time as clock

    controller, service = token_setup
    auth = bearer(service, "alice", PASSWORD, "repository:a:pull")
    info = request("GET", Route.MANIFEST, "a", auth)
    assert isinstance(controller.decide(info), Allowed)
    assert isinstance(controller.remembered(info), Allowed)
    later = clock.time() + 3600
    real = clock.monotonic()
    monkeypatch.setattr(clock, "monotonic", lambda: real + 3600)
    monkeypatch.setattr(clock, "time", lambda: later)
    assert controller.remembered(info) is None
