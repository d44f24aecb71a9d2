"""k3sreg's auth pieces against the real docker-registry 2.8.2: tokens from the built-in token service (signed
with a certificate from `k3sreg certs`) are accepted for what they grant and refused beyond it; the same tokens
get the same verdict from docker-registry and from k3sreg's verifier; htpasswd files written by
`k3sreg htpasswd` work in docker-registry's `auth.htpasswd`."""

from __future__ import annotations

import http.client
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k3sreg.auth.certs import Issued, issue_signer, make_ca, write_pair
from k3sreg.auth.challenge import bearer_challenge
from k3sreg.auth.header import basic_authorization
from k3sreg.auth.htpasswd import HtpasswdFile
from k3sreg.auth.keys import Trust, libtrust_key_id
from k3sreg.auth.model import Denial, Principal, Reason
from k3sreg.auth.rules import AccessRules, Rule
from k3sreg.auth.scopes import Route, required_access
from k3sreg.auth.service import TokenService
from k3sreg.auth.signing import SigningKey, StaticSigner
from k3sreg.auth.tokens import TokenVerifier, sign_token
from tests.peers.registry import K3SREG_BIN, DockerRegistry
from tests.unit.auth.tokenkit import b64url, cert_for, claims, der_b64, mint, new_key, unsigned

ISSUER, SERVICE = "k3sreg-builtin", "interop-registry"
PASSWORD = "interop-Pa55word"


def request(reg: DockerRegistry, method: str, path: str, authorization: str | None = None) -> tuple[int, str]:
    """(status, WWW-Authenticate) of one request to the registry."""
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=10)
    try:
        conn.request(method, path, headers={"Authorization": authorization} if authorization else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("WWW-Authenticate") or ""
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Issued, Issued, Path]:
    """A CA and a token-signing certificate made by k3sreg's certificate code, written as files."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca("interop CA")
    signer = issue_signer(ca, "interop signer")
    write_pair(ca, directory / "ca.crt", directory / "ca.key")
    write_pair(signer, directory / "signer.crt", directory / "signer.key")
    return ca, signer, directory


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An htpasswd file written by the real `k3sreg htpasswd set`, password on stdin."""
    path = tmp_path_factory.mktemp("users") / "htpasswd"
    for user in ("ci", "nodes"):
        subprocess.run([str(K3SREG_BIN), "htpasswd", "set", str(path), user, "--password-stdin"],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def service(pki: tuple[Issued, Issued, Path], users: Path) -> TokenService:
    """The built-in token service signing with the CA-issued signer (x5c in every token)."""
    _, _, directory = pki
    rules = AccessRules([Rule.of(users=["ci"], repositories=["team/**"], actions=["pull", "push"]),
                         Rule.of(users=["nodes"], repositories=["**"], actions=["pull"])])
    signer = StaticSigner(directory / "signer.key", directory / "signer.crt")
    return TokenService(ISSUER, SERVICE, HtpasswdFile(users), rules, signer)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory, pki: tuple[Issued, Issued, Path]
                   ) -> Iterator[DockerRegistry]:
    """docker-registry 2.8.2 trusting the k3sreg CA as its token root bundle."""
    _, _, directory = pki
    auth = {"token": {"realm": "http://127.0.0.1:9/auth/token", "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(directory / "ca.crt")}}
    with DockerRegistry(tmp_path_factory.mktemp("dr-token"), config={"auth": auth}) as reg:
        yield reg


def issued_token(service: TokenService, user: str, *scopes: str) -> str:
    reply = service.answer_get([basic_authorization(user, PASSWORD)], {"service": [SERVICE], "scope": list(scopes)},
                               "127.0.0.1")
    assert reply.status == 200, reply.body
    return str(reply.body["token"])


def test_builtin_token_is_accepted_for_its_grant_and_refused_beyond(token_registry: DockerRegistry,
                                                                    service: TokenService) -> None:
    """docker-registry takes a token of the built-in service for team/app (push too), and refuses it on
    another repository, for delete, and for the catalog, with error="insufficient_scope"."""
    token = issued_token(service, "ci", "repository:team/app:pull,push,delete", "repository:other:pull")
    bearer = f"Bearer {token}"
    assert request(token_registry, "GET", "/v2/", bearer)[0] == 200
    assert request(token_registry, "GET", "/v2/team/app/tags/list", bearer)[0] == 404  # allowed; nothing pushed
    assert request(token_registry, "POST", "/v2/team/app/blobs/uploads/", bearer)[0] == 202
    for method, path in (("GET", "/v2/other/tags/list"), ("DELETE", "/v2/team/app/manifests/sha256:" + "0" * 64),
                         ("GET", "/v2/_catalog")):
        status, challenge = request(token_registry, method, path, bearer)
        assert status == 401 and 'error="insufficient_scope"' in challenge, (method, path)


def test_challenges_are_distribution_s_to_the_byte(token_registry: DockerRegistry, service: TokenService) -> None:
    """k3sreg's challenge functions write what docker-registry sends: no token, bad token, too narrow a token."""
    realm = "http://127.0.0.1:9/auth/token"
    need = required_access("GET", Route.TAGS, "other")
    narrow = f"Bearer {issued_token(service, 'ci', 'repository:team/app:pull')}"
    cases = ((None, Denial(Reason.MISSING)), ("Bearer e30.e30.e30", Denial(Reason.TOKEN_MALFORMED)),
             (narrow, Denial(Reason.INSUFFICIENT_SCOPE)))
    for authorization, denial in cases:
        status, challenge = request(token_registry, "GET", "/v2/other/tags/list", authorization)
        assert status == 401 and challenge == bearer_challenge(realm, SERVICE, need, denial)
    assert request(token_registry, "GET", "/v2/_catalog")[1] == bearer_challenge(
        realm, SERVICE, required_access("GET", Route.CATALOG))


def test_scopes_the_rules_do_not_grant_are_refused(token_registry: DockerRegistry, service: TokenService) -> None:
    """A user whose rules allow pull only gets a token docker-registry refuses for push."""
    bearer = f"Bearer {issued_token(service, 'nodes', 'repository:team/app:pull,push')}"
    assert request(token_registry, "GET", "/v2/team/app/tags/list", bearer)[0] == 404
    status, challenge = request(token_registry, "POST", "/v2/team/app/blobs/uploads/", bearer)
    # Go prints the actions of a scope in map order, so either order may come.
    assert status == 401 and ('scope="repository:team/app:pull,push"' in challenge
                              or 'scope="repository:team/app:push,pull"' in challenge)


def control_tokens(ca: Issued, signer: Issued) -> dict[str, str]:
    """Tokens of every kind for `GET /v2/`, good and bad."""
    now = int(time.time())
    x5c = [der_b64(signer.cert)]
    outsider = cert_for(new_key(), None, "interop CA", ca=True)
    outsider_leaf = cert_for(new_key(), outsider, "leaf")
    kid = libtrust_key_id(ca.key.public_key())
    good = claims(now, iss=ISSUER, aud=SERVICE)
    return {
        "x5c": mint(signer.key, good, x5c=x5c),
        "libtrust-kid": sign_token(SigningKey(kid, ca.key, "ES256"), good),
        "expired": mint(signer.key, {**good, "exp": now - 3600}, x5c=x5c),
        "not-yet-valid": mint(signer.key, {**good, "nbf": now + 3600}, x5c=x5c),
        "wrong-aud": mint(signer.key, {**good, "aud": "elsewhere"}, x5c=x5c),
        "wrong-iss": mint(signer.key, {**good, "iss": "elsewhere"}, x5c=x5c),
        "foreign-chain": mint(outsider_leaf.key, good, x5c=[der_b64(outsider_leaf.cert), der_b64(outsider.cert)]),
        "unknown-kid": mint(new_key(), good, kid="AAAA:BBBB"),
        "alg-none": unsigned(good, kid=kid),
        "tampered": mint(signer.key, good, x5c=x5c)[:-8] + b64url(b"tamper"),
    }


def test_same_tokens_same_verdicts(token_registry: DockerRegistry, pki: tuple[Issued, Issued, Path]) -> None:
    """Control: each token gets the same verdict from docker-registry 2.8.2 and from k3sreg's verifier; the
    libtrust-style kid of a root key (k3sreg's computation) is accepted by docker-registry."""
    ca, signer, _ = pki
    verifier = TokenVerifier(ISSUER, SERVICE, Trust([ca.cert]))
    verdicts: dict[str, tuple[bool, bool]] = {}
    for name, token in control_tokens(ca, signer).items():
        theirs = request(token_registry, "GET", "/v2/", f"Bearer {token}")[0] == 200
        ours = isinstance(verifier.verify(token), Principal)
        verdicts[name] = (theirs, ours)
    assert all(theirs == ours for theirs, ours in verdicts.values()), verdicts
    assert {n for n, (theirs, _) in verdicts.items() if theirs} == {"x5c", "libtrust-kid"}


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory, users: Path) -> Iterator[DockerRegistry]:
    """docker-registry 2.8.2 with `auth.htpasswd` on the file `k3sreg htpasswd` wrote."""
    auth: dict[str, Any] = {"htpasswd": {"realm": "interop", "path": str(users)}}
    with DockerRegistry(tmp_path_factory.mktemp("dr-htpasswd"), config={"auth": auth}) as reg:
        yield reg


def test_k3sreg_htpasswd_file_works_in_docker_registry(htpasswd_registry: DockerRegistry, users: Path) -> None:
    """Users written by `k3sreg htpasswd set` log in to docker-registry; wrong or unknown ones get the Basic
    challenge, as k3sreg's own check of the same file says."""
    ours = HtpasswdFile(users)
    for user, password, ok in (("ci", PASSWORD, True), ("nodes", PASSWORD, True), ("ci", "wrong-pass", False),
                               ("ghost", PASSWORD, False)):
        status, challenge = request(htpasswd_registry, "GET", "/v2/", basic_authorization(user, password))
        assert (status == 200) is ok and isinstance(ours.verify(user, password), Principal) is ok
        if not ok:
            assert challenge == 'Basic realm="interop"'
