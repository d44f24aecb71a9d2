"""Keys that sign tokens, and the trust to check them: root certificates, a JWKS, key ids.

A token names its signing key in one of three ways (Distribution reads them in this order):
- `x5c`: the signer's certificate chain, which must lead to a certificate of `rootcertbundle`;
- `jwk`: the key itself, trusted only when its id is one of the trusted keys (or its own `x5c` chain leads to a
  root);
- `kid`: the id of a trusted key. Trusted keys are the keys of the root certificates, under both the id
  Distribution 2.x gives them (libtrust: base32 of the SHA-256 of the key, in groups of four) and the one 3.x
  gives them (RFC 7638 thumbprint), the keys of `jwks` under their `kid`, and k3sreg's own signing keys.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt import PyJWK
from jwt.exceptions import PyJWKError, PyJWKSetError

from k3sreg.errors import ConfigError

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
MAX_CHAIN = 5
"""Most certificates an `x5c` header may carry."""
_CURVES = {"secp256r1": ("P-256", "ES256"), "secp384r1": ("P-384", "ES384"), "secp521r1": ("P-521", "ES512")}


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(key: PublicKey) -> str:
    """The key id Distribution 2.x (libtrust) gives a key: SHA-256 of its SubjectPublicKeyInfo, 240 bits, base32,
    in groups of four joined by ':'."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def _int_b64(value: int, size: int | None = None) -> str:
    return b64url(value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big"))


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The required members of the key's JWK (RFC 7517), the ones its RFC 7638 thumbprint covers."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _CURVES.get(key.curve.name)
        if crv is None:
            raise ValueError(f"curve {key.curve.name} has no JWK name")
        size = (key.curve.key_size + 7) // 8
        nums = key.public_numbers()
        return {"crv": crv[0], "kty": "EC", "x": _int_b64(nums.x, size), "y": _int_b64(nums.y, size)}
    if isinstance(key, rsa.RSAPublicKey):
        rnums = key.public_numbers()
        return {"e": _int_b64(rnums.e), "kty": "RSA", "n": _int_b64(rnums.n)}
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448", "kty": "OKP", "x": b64url(raw)}


def jwk_thumbprint(key: PublicKey) -> str:
    """The RFC 7638 SHA-256 thumbprint of the key (the id Distribution 3 gives a root certificate's key)."""
    canonical = json.dumps(public_jwk(key), sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def algorithms_for(key: PublicKey) -> frozenset[str]:
    """The JWS algorithms this key can verify: a key never verifies an algorithm of another family."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return frozenset({_CURVES[key.curve.name][1]}) if key.curve.name in _CURVES else frozenset()
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    return frozenset({"EdDSA"})


def same_key(a: PublicKey, b: PublicKey) -> bool:
    """True when both are the same public key."""
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(*der) == b.public_bytes(*der)


def as_public_key(key: object) -> PublicKey | None:
    """`key` when it is a public key tokens can be signed with, else None."""
    return key if isinstance(key, PublicKey) else None


def load_certificates(path: Path, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; ConfigError naming `what` when it is unreadable or holds none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{what}: cannot read {path}: {exc.strerror}"]) from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError([f"{what}: {path} holds no PEM certificate (or a damaged one)"]) from None
    return certs


class Trust:
    """The roots certificate chains must lead to, and the trusted keys by id (see the module docstring)."""

    def __init__(self, roots: Sequence[x509.Certificate] = (), keys: dict[str, PublicKey] | None = None) -> None:
        self.roots = list(roots)
        self.keys: dict[str, PublicKey] = dict(keys or {})
        for cert in self.roots:
            key = as_public_key(cert.public_key())
            if key is not None:
                self.keys[libtrust_key_id(key)] = key
                self.keys[jwk_thumbprint(key)] = key

    @classmethod
    def load(cls, rootcertbundle: str = "", jwks: str = "") -> Trust:
        """Trust from `auth.token.rootcertbundle` and `auth.token.jwks` (either may be empty)."""
        roots = load_certificates(Path(rootcertbundle), "auth.token.rootcertbundle") if rootcertbundle else []
        keys: dict[str, PublicKey] = {}
        if jwks:
            keys = load_jwks(Path(jwks))
        return cls(roots, keys)

    def chain_key(self, x5c: Any, now: datetime.datetime) -> PublicKey | str:
        """The leaf key of an `x5c` chain that leads to a root, else what is wrong with it."""
        if not isinstance(x5c, list) or not 0 < len(x5c) <= MAX_CHAIN or not all(isinstance(c, str) for c in x5c):
            return f"x5c must be a list of 1 to {MAX_CHAIN} certificates"
        try:
            certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
        except (binascii.Error, ValueError):
            return "x5c holds a certificate that cannot be read"
        problem = self._path(certs[0], certs[1:], now)
        if problem:
            return problem
        key = as_public_key(certs[0].public_key())
        return key if key is not None else "the leaf certificate's key cannot sign tokens"

    def _path(self, leaf: x509.Certificate, pool: list[x509.Certificate], now: datetime.datetime) -> str:
        """'' when a path of valid certificates leads from `leaf` through `pool` to a root, else why not."""
        current, below = leaf, 0
        for _ in range(MAX_CHAIN + 1):
            if not _valid_at(current, now):
                return f"certificate {current.subject.rfc4514_string()!r} is not valid now"
            if current in self.roots:
                return ""
            root = next((r for r in self.roots if _issued_by(current, r)), None)
            if root is not None:
                return "" if _valid_at(root, now) else f"root {root.subject.rfc4514_string()!r} is not valid now"
            parent = next((c for c in pool if _issued_by(current, c) and _may_sign(c, below)), None)
            if parent is None:
                return "the certificate chain does not lead to a root of rootcertbundle"
            current, below = parent, below + 1
        return "the certificate chain is too long"


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _may_sign(ca: x509.Certificate, below: int) -> bool:
    """True when `ca` may issue certificates, with `below` intermediates already under it."""
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca or (bc.path_length is not None and below > bc.path_length):
        return False
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.key_cert_sign


def load_jwks(path: Path) -> dict[str, PublicKey]:
    """The public keys of a JWKS file by `kid`; ConfigError when it is unreadable or a key has no `kid`."""
    where = "auth.token.jwks"
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read {path}: {exc.strerror}"]) from None
    except ValueError:
        raise ConfigError([f"{where}: {path} is not JSON"]) from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ConfigError([f"{where}: {path} is not a JWKS (a JSON object with a 'keys' list)"])
    problems: list[str] = []
    keys: dict[str, PublicKey] = {}
    for i, item in enumerate(data["keys"]):
        kid = item.get("kid") if isinstance(item, dict) else None
        if not isinstance(kid, str) or not kid:
            problems.append(f"{where}: key {i} of {path} has no 'kid'; tokens name their key by kid, so add one")
            continue
        try:
            raw = PyJWK(item).key
        except (PyJWKError, PyJWKSetError, ValueError, TypeError):
            raw = None
        if isinstance(raw, PrivateKey):
            raw = raw.public_key()
        key = as_public_key(raw)
        if key is None:
            problems.append(f"{where}: key {kid!r} of {path} is not an EC, RSA or OKP public key")
            continue
        keys[kid] = key
    if problems:
        raise ConfigError(problems)
    if not keys and data["keys"]:
        raise ConfigError([f"{where}: {path} has no usable key"])
    return keys


def jwks_document(keys: dict[str, PublicKey]) -> dict[str, Any]:
    """A JWKS for `keys` (kid -> key), with `alg` and `use` set, as another registry's `auth.token.jwks` reads it."""
    out = []
    for kid, key in keys.items():
        algs = sorted(algorithms_for(key))
        entry: dict[str, Any] = {**public_jwk(key), "kid": kid, "use": "sig"}
        if len(algs) == 1 or isinstance(key, rsa.RSAPublicKey):
            entry["alg"] = "RS256" if isinstance(key, rsa.RSAPublicKey) else algs[0]
        out.append(entry)
    return {"keys": out}

