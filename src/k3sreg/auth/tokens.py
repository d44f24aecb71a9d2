"""Bearer tokens checked as Distribution's `auth.token` checks them, and signed for the built-in service.

A token passes when, in this order: it is three base64url parts; its `alg` is allowed (`signingalgorithms`,
and never `none` or an HMAC: a public key must never serve as an HMAC secret); its signing key is trusted
(`keys.py`: `x5c` chain, `jwk`, or `kid`; the built-in service's own keys by `kid` first) and of the
algorithm's family; the signature holds; `iss` is the configured issuer; `aud` (a string, or a list as
Distribution 3 takes it) holds the service; `exp` has not passed and `nbf` has come, each with `LEEWAY`; and its
`access` claim is well formed. Its grants are that claim.

A token that passed is remembered until it expires (bounded, least recently used first out), so a client that
sends the same token on every request costs one dictionary lookup per request.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeGuard

import jwt
from jwt.exceptions import InvalidKeyError, InvalidSignatureError, PyJWKError, PyJWTError

from k3sreg.auth.keys import (
    PrivateKey,
    PublicKey,
    Trust,
    algorithms_for,
    as_public_key,
    jwk_thumbprint,
    libtrust_key_id,
    same_key,
)
from k3sreg.auth.model import Access, Denial, Principal, Reason
from k3sreg.auth.signing import LEEWAY, Signer, SigningKey

ASYMMETRIC = frozenset({"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
"""The algorithms a token may use: those checked with a public key."""
MAX_TOKEN = 8192
CACHE_SIZE = 4096


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_access(claim: Any) -> frozenset[Access] | None:
    """The grants of an `access` claim (missing or null: none), or None when it is malformed."""
    if claim is None:
        return frozenset()
    if not isinstance(claim, list):
        return None
    found: set[Access] = set()
    for entry in claim:
        if not isinstance(entry, dict):
            return None
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions") or []
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list) \
                or not all(isinstance(a, str) for a in actions):
            return None
        found.update(Access(kind, name, a) for a in actions)
    return frozenset(found)


class TokenVerifier:
    """Checks Bearer tokens for `service` from `issuer` (see the module docstring).

    `trust` holds the root certificates and JWKS keys; `own` is the built-in service's signer, whose keys are
    trusted by kid; `algorithms` is `signingalgorithms` (empty: every asymmetric algorithm).
    """

    def __init__(self, issuer: str, service: str, trust: Trust, own: Signer | None = None,
                 algorithms: Iterable[str] = (), clock: Callable[[], float] = time.time,
                 leeway: float = LEEWAY) -> None:
        self.issuer = issuer
        self.service = service
        self.trust = trust
        self.own = own
        self.algorithms = (frozenset(algorithms) or ASYMMETRIC) & ASYMMETRIC
        self._clock = clock
        self.leeway = leeway
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[str, Principal] = collections.OrderedDict()

    def verify(self, raw: str) -> Principal | Denial:
        """The principal a token stands for, or why it does not pass."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(raw)
            if hit is not None:
                if hit.expires is not None and hit.expires >= now:
                    self._cache.move_to_end(raw)
                    return hit
                del self._cache[raw]
        result = self._check(raw, now)
        if isinstance(result, Principal):
            with self._lock:
                self._cache[raw] = result
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return result

    def _check(self, raw: str, now: float) -> Principal | Denial:
        parts = raw.split(".")
        if len(raw) > MAX_TOKEN or len(parts) != 3:
            return Denial(Reason.TOKEN_MALFORMED, detail="not three dot-separated parts")
        try:
            header = _b64json(parts[0])
        except (ValueError, binascii.Error):
            return Denial(Reason.TOKEN_MALFORMED, detail="the header is not base64url JSON")
        if not isinstance(header, dict):
            return Denial(Reason.TOKEN_MALFORMED, detail="the header is not a JSON object")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return Denial(Reason.TOKEN_ALGORITHM, detail=f"alg {str(alg)[:16]!r} is not allowed")
        key = self._key(header, now)
        if isinstance(key, Denial):
            return key
        if alg not in algorithms_for(key):
            return Denial(Reason.TOKEN_ALGORITHM, detail=f"alg {alg} does not fit the signing key")
        try:
            payload = jwt.PyJWS().decode_complete(raw, key=key, algorithms=[alg])["payload"]
            claims = json.loads(payload)
        except InvalidSignatureError:
            return Denial(Reason.TOKEN_SIGNATURE)
        except (PyJWTError, ValueError, TypeError):
            return Denial(Reason.TOKEN_MALFORMED, detail="the signature or claims cannot be read")
        if not isinstance(claims, dict):
            return Denial(Reason.TOKEN_MALFORMED, detail="the claims are not a JSON object")
        return self._claims(claims, now)

    def _claims(self, claims: dict[str, Any], now: float) -> Principal | Denial:
        sub = claims.get("sub") if isinstance(claims.get("sub"), str) else None
        user = sub or None
        if claims.get("iss") != self.issuer:
            return Denial(Reason.TOKEN_ISSUER, user, f"iss {str(claims.get('iss'))[:100]!r}")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.service not in audiences:
            return Denial(Reason.TOKEN_AUDIENCE, user, f"aud {str(aud)[:100]!r}")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not _number(exp):
            return Denial(Reason.TOKEN_EXPIRED, user, "no exp")
        expires = float(exp) + self.leeway
        if now > expires:
            return Denial(Reason.TOKEN_EXPIRED, user)
        if nbf is not None and (not _number(nbf) or now < nbf - self.leeway):
            return Denial(Reason.TOKEN_NOT_YET_VALID, user)
        grants = parse_access(claims.get("access"))
        if grants is None:
            return Denial(Reason.TOKEN_MALFORMED, user, "the access claim is malformed")
        return Principal(user, "token", grants, expires)

    def trusted_keys(self) -> dict[str, PublicKey]:
        """Every key a `kid` may name: the trust's and the built-in service's."""
        return {**self.trust.keys, **(self.own.public_keys() if self.own else {})}

    def _key(self, header: dict[str, Any], now: float) -> PublicKey | Denial:
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        kid = header.get("kid")
        if self.own is not None and isinstance(kid, str):
            # The built-in service's own tokens carry x5c only for other registries (whose roots may not be
            # ours): its keys are trusted here by kid whatever the chain says.
            own = self.own.public_keys().get(kid)
            if own is not None:
                return own
        if "x5c" in header:
            found = self.trust.chain_key(header["x5c"], moment)
            return found if not isinstance(found, str) else Denial(Reason.TOKEN_CHAIN, detail=found)
        if "jwk" in header:
            return self._jwk_key(header["jwk"], moment)
        if isinstance(kid, str) and kid:
            key = self.trusted_keys().get(kid)
            return key if key is not None else Denial(Reason.TOKEN_KEY, detail=f"unknown kid {kid[:100]!r}")
        return Denial(Reason.TOKEN_KEY, detail="the header names no key (x5c, jwk or kid)")

    def _jwk_key(self, jwk_value: Any, moment: datetime.datetime) -> PublicKey | Denial:
        if not isinstance(jwk_value, dict):
            return Denial(Reason.TOKEN_MALFORMED, detail="jwk is not an object")
        if "x5c" in jwk_value:
            found = self.trust.chain_key(jwk_value["x5c"], moment)
            return found if not isinstance(found, str) else Denial(Reason.TOKEN_CHAIN, detail=found)
        try:
            embedded = jwt.PyJWK(jwk_value).key
        except (PyJWKError, InvalidKeyError, ValueError, TypeError):
            return Denial(Reason.TOKEN_MALFORMED, detail="jwk cannot be read")
        public = as_public_key(embedded)
        if public is None:
            return Denial(Reason.TOKEN_KEY, detail="jwk is not a public key")
        trusted = self.trusted_keys()
        for kid in (libtrust_key_id(public), jwk_thumbprint(public)):
            known = trusted.get(kid)
            if known is not None and same_key(known, public):
                return known
        return Denial(Reason.TOKEN_KEY, detail="jwk is not a trusted key and carries no certificate chain")


def sign_token(signing: SigningKey, claims: dict[str, Any]) -> str:
    """A compact JWS of `claims`, naming its key by `kid` (and `x5c` when the key has a certificate chain)."""
    headers: dict[str, Any] = {"typ": "JWT", "kid": signing.kid}
    if signing.x5c:
        headers["x5c"] = list(signing.x5c)
    key: PrivateKey = signing.key
    return jwt.encode(claims, key, algorithm=signing.algorithm, headers=headers)
