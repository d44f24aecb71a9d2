"""Token verification as Distribution's auth.token does it, and each attack of issue 10 refused for its reason."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from k3sreg.auth.certs import Issued, cert_pem, issue_signer, key_pem
from k3sreg.auth.keys import Trust, jwk_thumbprint, jwks_document, libtrust_key_id, public_jwk
from k3sreg.auth.model import Access, Denial, Principal, Reason
from k3sreg.auth.signing import KeyRing, StaticSigner
from k3sreg.auth.tokens import ASYMMETRIC, MAX_TOKEN, TokenVerifier, parse_access, sign_token
from k3sreg.errors import ConfigError
from tests.unit.auth.conftest import SECRETS
from tests.unit.auth.tokenkit import (
    ISSUER,
    SERVICE,
    b64url,
    cert_for,
    claims,
    der_b64,
    hmac_with,
    mint,
    new_key,
    unsigned,
)

PULL_A = Access("repository", "a", "pull")


def verifier(ca: Issued, now: float | None = None, **kw: object) -> TokenVerifier:
    t = now if now is not None else time.time()
    return TokenVerifier(ISSUER, SERVICE, Trust([ca.cert]), clock=lambda: t, **kw)  # type: ignore[arg-type]


def denied(found: Principal | Denial, reason: Reason) -> bool:
    return isinstance(found, Denial) and found.reason is reason


def test_x5c_chain_to_the_root_passes(ca: Issued, signer: Issued) -> None:
    """A token whose x5c leaf is issued by a root of the bundle passes, granting its access claim."""
    found = verifier(ca).verify(mint(signer.key, claims(), x5c=[der_b64(signer.cert)]))
    assert isinstance(found, Principal) and found.name == "alice" and found.method == "token"
    assert found.grants == frozenset({PULL_A})


def test_x5c_through_an_intermediate(ca: Issued) -> None:
    """An intermediate CA in x5c links the leaf to the root; without the CA flag on it, the chain breaks."""
    root = cert_for(new_key(), None, "root", ca=True)
    mid = cert_for(new_key(), root, "mid", ca=True, path_length=0)
    leaf = cert_for(new_key(), mid, "leaf")
    ok = TokenVerifier(ISSUER, SERVICE, Trust([root.cert]))
    assert isinstance(ok.verify(mint(leaf.key, claims(), x5c=[der_b64(leaf.cert), der_b64(mid.cert)])), Principal)
    fake_mid = cert_for(mid.key, root, "mid", ca=False)  # same key and name, but not a CA
    token = mint(leaf.key, claims(), x5c=[der_b64(leaf.cert), der_b64(fake_mid.cert)])
    assert denied(ok.verify(token), Reason.TOKEN_CHAIN)


def test_path_length_is_enforced() -> None:
    """An intermediate limited to path length 0 cannot stand over another CA."""
    root = cert_for(new_key(), None, "root", ca=True)
    mid = cert_for(new_key(), root, "mid", ca=True, path_length=0)
    mid2 = cert_for(new_key(), mid, "mid2", ca=True)
    leaf = cert_for(new_key(), mid2, "leaf")
    check = TokenVerifier(ISSUER, SERVICE, Trust([root.cert]))
    token = mint(leaf.key, claims(), x5c=[der_b64(leaf.cert), der_b64(mid2.cert), der_b64(mid.cert)])
    assert denied(check.verify(token), Reason.TOKEN_CHAIN)
    open_mid = cert_for(mid.key, root, "mid", ca=True)
    token = mint(leaf.key, claims(), x5c=[der_b64(leaf.cert), der_b64(mid2.cert), der_b64(open_mid.cert)])
    assert isinstance(check.verify(token), Principal)


def test_chain_that_does_not_reach_the_root_is_refused(ca: Issued) -> None:
    """A self-signed signer outside the bundle, with a name copied from the CA, is refused."""
    impostor = cert_for(new_key(), None, "k3sreg CA", ca=True)
    leaf = cert_for(new_key(), impostor, "leaf")
    token = mint(leaf.key, claims(), x5c=[der_b64(leaf.cert), der_b64(impostor.cert)])
    assert denied(verifier(ca).verify(token), Reason.TOKEN_CHAIN)


def test_expired_signer_certificate_is_refused(ca: Issued) -> None:
    """A leaf certificate out of its validity window breaks the chain."""
    from k3sreg.auth.certs import issue_signer

    leaf = issue_signer(ca, "s")
    later = leaf.cert.not_valid_after_utc.timestamp() + 10
    token = mint(leaf.key, claims(later), x5c=[der_b64(leaf.cert)])
    assert denied(verifier(ca, now=later).verify(token), Reason.TOKEN_CHAIN)


@pytest.mark.parametrize("x5c", ["notalist", [], ["!!"], ["AAAA"], [1]])
def test_garbage_x5c_is_refused(ca: Issued, signer: Issued, x5c: object) -> None:
    """An x5c that is not a list of base64 DER certificates is refused, not an exception."""
    assert denied(verifier(ca).verify(mint(signer.key, claims(), x5c=x5c)), Reason.TOKEN_CHAIN)


def test_signature_by_another_key_than_the_x5c_leaf(ca: Issued, signer: Issued) -> None:
    """A valid chain does not make a token signed by some other key pass."""
    token = mint(new_key(), claims(), x5c=[der_b64(signer.cert)])
    assert denied(verifier(ca).verify(token), Reason.TOKEN_SIGNATURE)


def test_tampered_claims_break_the_signature(ca: Issued, signer: Issued) -> None:
    """Widening the access claim after signing is caught."""
    head, _, sig = mint(signer.key, claims(), x5c=[der_b64(signer.cert)]).split(".")
    wider = claims(access=[{"type": "repository", "name": "a", "actions": ["pull", "push"]}])
    token = f"{head}.{b64url(json.dumps(wider).encode())}.{sig}"
    assert denied(verifier(ca).verify(token), Reason.TOKEN_SIGNATURE)


def test_kid_of_a_root_key_in_both_distribution_spellings(ca: Issued) -> None:
    """A token signed by a root certificate's key, named by libtrust id (2.x) or RFC 7638 thumbprint (3.x)."""
    public = ca.key.public_key()
    for kid in (libtrust_key_id(public), jwk_thumbprint(public)):
        assert isinstance(verifier(ca).verify(mint(ca.key, claims(), kid=kid)), Principal)


def test_libtrust_key_id_shape(ca: Issued) -> None:
    """The libtrust id is 12 groups of 4 base32 characters."""
    kid = libtrust_key_id(ca.key.public_key())
    assert re.fullmatch(r"(?:[A-Z2-7]{4}:){11}[A-Z2-7]{4}", kid)


def test_unknown_kid_is_refused(ca: Issued) -> None:
    """A kid nobody trusts is refused; so is a header that names no key at all."""
    key = new_key()
    assert denied(verifier(ca).verify(mint(key, claims(), kid="nobody")), Reason.TOKEN_KEY)
    assert denied(verifier(ca).verify(mint(key, claims())), Reason.TOKEN_KEY)


def test_jwks_keys_by_kid(tmp_path: Path, ca: Issued) -> None:
    """Keys of the jwks file verify tokens naming their kid; a JWKS key without kid is a config problem."""
    key = new_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document({"k1": key.public_key()})))
    check = TokenVerifier(ISSUER, SERVICE, Trust.load(jwks=str(path)))
    assert isinstance(check.verify(mint(key, claims(), kid="k1")), Principal)
    assert denied(check.verify(mint(key, claims(), kid="k2")), Reason.TOKEN_KEY)
    path.write_text(json.dumps({"keys": [public_jwk(key.public_key())]}))
    with pytest.raises(ConfigError, match="has no 'kid'"):
        Trust.load(jwks=str(path))


def test_embedded_jwk_is_trusted_only_when_it_is_a_trusted_key(ca: Issued) -> None:
    """A token carrying its own jwk passes only if that key is a root's key: an attacker's key is refused."""
    own = {**public_jwk(ca.key.public_key())}
    assert isinstance(verifier(ca).verify(mint(ca.key, claims(), jwk=own)), Principal)
    attacker = new_key()
    token = mint(attacker, claims(), jwk=public_jwk(attacker.public_key()))
    assert denied(verifier(ca).verify(token), Reason.TOKEN_KEY)


def test_alg_none_is_refused(ca: Issued) -> None:
    """`alg: none` never passes, whatever key the header names."""
    token = unsigned(claims(), kid=libtrust_key_id(ca.key.public_key()))
    assert denied(verifier(ca).verify(token), Reason.TOKEN_ALGORITHM)


def test_hs256_signed_with_the_public_key_is_refused(ca: Issued) -> None:
    """Key confusion: an HMAC over the trusted public key's PEM is refused, even with HS256 configured."""
    pem = ca.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = libtrust_key_id(ca.key.public_key())
    token = hmac_with(pem, claims(), kid=kid)
    assert denied(verifier(ca).verify(token), Reason.TOKEN_ALGORITHM)
    configured = verifier(ca, algorithms=["HS256", "ES256"])
    assert "HS256" not in configured.algorithms
    assert denied(configured.verify(token), Reason.TOKEN_ALGORITHM)


def test_every_allowed_algorithm_is_asymmetric() -> None:
    """The verifier's algorithm set can never hold none or an HMAC."""
    assert not any(a.startswith("HS") or a == "none" for a in ASYMMETRIC)


def test_signingalgorithms_limits_the_algorithms(ca: Issued) -> None:
    """An ES256 token is refused when only RS256 is configured."""
    token = mint(ca.key, claims(), kid=libtrust_key_id(ca.key.public_key()))
    assert denied(verifier(ca, algorithms=["RS256"]).verify(token), Reason.TOKEN_ALGORITHM)


def test_alg_must_fit_the_key(ca: Issued) -> None:
    """An RS256 header over an EC key, or ES384 over P-256, is refused before the signature is looked at."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = cert_for(rsa_key, None, "rsa", ca=True)  # type: ignore[arg-type]
    check = TokenVerifier(ISSUER, SERVICE, Trust([ca.cert, cert.cert]))
    kid = libtrust_key_id(ca.key.public_key())
    assert isinstance(check.verify(mint(rsa_key, claims(), alg="RS256", kid=libtrust_key_id(rsa_key.public_key()))),
                      Principal)
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert denied(check.verify(mint(p384, claims(), alg="ES384", kid=kid)), Reason.TOKEN_ALGORITHM)
    assert denied(check.verify(mint(rsa_key, claims(), alg="RS256", kid=kid)), Reason.TOKEN_ALGORITHM)


@pytest.mark.parametrize(("offset", "field", "reason"), [
    (-61, "exp", Reason.TOKEN_EXPIRED),
    (61, "nbf", Reason.TOKEN_NOT_YET_VALID),
])
def test_time_window_with_leeway(ca: Issued, signer: Issued, offset: int, field: str, reason: Reason) -> None:
    """Expired and not-yet-valid tokens are refused beyond 60 s of leeway, accepted within it."""
    now = time.time()
    x5c = [der_b64(signer.cert)]
    past_leeway = claims(now, **{field: int(now) + offset})
    within = claims(now, **{field: int(now) + (offset // 61) * 59})
    assert denied(verifier(ca, now).verify(mint(signer.key, past_leeway, x5c=x5c)), reason)
    assert isinstance(verifier(ca, now).verify(mint(signer.key, within, x5c=x5c)), Principal)


def test_token_without_exp_is_refused(ca: Issued, signer: Issued) -> None:
    """No exp means expired (Distribution reads a missing exp as 0)."""
    token = mint(signer.key, claims(exp=None), x5c=[der_b64(signer.cert)])
    assert denied(verifier(ca).verify(token), Reason.TOKEN_EXPIRED)


@pytest.mark.parametrize(("over", "reason"), [
    ({"aud": "another-registry"}, Reason.TOKEN_AUDIENCE),
    ({"aud": ["x", "y"]}, Reason.TOKEN_AUDIENCE),
    ({"aud": None}, Reason.TOKEN_AUDIENCE),
    ({"iss": "evil-issuer"}, Reason.TOKEN_ISSUER),
    ({"iss": None}, Reason.TOKEN_ISSUER),
    ({"access": {"type": "repository"}}, Reason.TOKEN_MALFORMED),
    ({"access": [{"type": "repository", "name": "a", "actions": "pull"}]}, Reason.TOKEN_MALFORMED),
])
def test_wrong_claims_are_refused(ca: Issued, signer: Issued, over: dict[str, Any], reason: Reason) -> None:
    """Wrong aud, wrong iss, malformed access: refused for that reason."""
    token = mint(signer.key, claims(**over), x5c=[der_b64(signer.cert)])
    assert denied(verifier(ca).verify(token), reason)


def test_audience_list_holding_the_service_passes(ca: Issued, signer: Issued) -> None:
    """`aud` may be a list (Distribution 3) that holds the service."""
    token = mint(signer.key, claims(aud=["other", SERVICE]), x5c=[der_b64(signer.cert)])
    assert isinstance(verifier(ca).verify(token), Principal)


@pytest.mark.parametrize("raw", ["", "a.b", "a.b.c.d", "!!.??.**", "x" * (MAX_TOKEN + 1),
                                 b64url(b"[1]") + ".e30.", b64url(b'{"alg":"ES256"') + ".e30.sig"])
def test_malformed_tokens_are_denials(ca: Issued, raw: str) -> None:
    """Garbage is a denial (malformed or no usable algorithm), never an exception."""
    found = verifier(ca).verify(raw)
    assert isinstance(found, Denial) and found.reason in (Reason.TOKEN_MALFORMED, Reason.TOKEN_ALGORITHM)


def test_grants_match_resource_and_action_exactly(ca: Issued, signer: Issued) -> None:
    """A token for `a` grants nothing on `b`; pull grants neither push nor delete; `*` grants every action."""
    body = claims(access=[{"type": "repository", "name": "a", "actions": ["pull"]},
                          {"type": "repository", "name": "c", "actions": ["*"]},
                          {"type": "registry", "name": "catalog", "actions": ["*"]}])
    found = verifier(ca).verify(mint(signer.key, body, x5c=[der_b64(signer.cert)]))
    assert isinstance(found, Principal)
    assert found.granted(PULL_A)
    assert not found.granted(Access("repository", "b", "pull"))
    assert not found.granted(Access("repository", "a", "push"))
    assert not found.granted(Access("repository", "a", "delete"))
    assert found.granted(Access("repository", "c", "delete"))
    assert found.granted(Access("registry", "catalog", "*"))


def test_parse_access_shapes() -> None:
    """A missing or null access claim grants nothing; a bad shape is None (malformed)."""
    assert parse_access(None) == frozenset()
    assert parse_access([{"type": "repository", "name": "a"}]) == frozenset()
    assert parse_access([["repository"]]) is None


def test_verification_is_cached_until_the_token_expires(ca: Issued, signer: Issued,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The second check of a token is a lookup (no signature work); past exp + leeway it is refused anyway."""
    now = [time.time()]
    check = TokenVerifier(ISSUER, SERVICE, Trust([ca.cert]), clock=lambda: now[0])
    token = mint(signer.key, claims(now[0]), x5c=[der_b64(signer.cert)])
    first = check.verify(token)
    assert isinstance(first, Principal)
    calls: list[int] = []
    real = jwt.PyJWS.decode_complete

    def counted(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(jwt.PyJWS, "decode_complete", counted)
    assert check.verify(token) is first and calls == []
    now[0] += 300 + 61
    assert denied(check.verify(token), Reason.TOKEN_EXPIRED) and calls == [1]


def test_own_keyring_keys_are_trusted_by_kid(tmp_path: Path, ca: Issued) -> None:
    """Tokens of the built-in service (kid in its own key set) pass the same verifier."""
    ring = KeyRing(tmp_path / "keys.json", lifetime=300)
    key = ring.signing_key()
    check = TokenVerifier(ISSUER, SERVICE, Trust([]), own=ring)
    assert isinstance(check.verify(mint(key.key, claims(), kid=key.kid)), Principal)
    assert denied(TokenVerifier(ISSUER, SERVICE, Trust([ca.cert])).verify(mint(key.key, claims(), kid=key.kid)),
                  Reason.TOKEN_KEY)


def test_own_static_key_with_x5c_passes_without_a_root_bundle(tmp_path: Path, ca: Issued) -> None:
    """The built-in service signing with its own key and certificate (x5c in every token) verifies its tokens
    by kid, with no rootcertbundle configured; a token with the same x5c but another key still fails."""
    issued = issue_signer(ca, "own")
    SECRETS.add(key_pem(issued.key).decode())
    (tmp_path / "k.pem").write_bytes(key_pem(issued.key))
    (tmp_path / "c.pem").write_bytes(cert_pem(issued.cert))
    static = StaticSigner(tmp_path / "k.pem", tmp_path / "c.pem")
    verifier = TokenVerifier(ISSUER, SERVICE, Trust(), own=static)
    token = sign_token(static.signing_key(), claims())
    SECRETS.add(token)
    assert isinstance(verifier.verify(token), Principal)
    forged = mint(new_key(), claims(), kid=static.signing_key().kid, x5c=list(static.signing_key().x5c))
    assert isinstance(verifier.verify(forged), Denial)
