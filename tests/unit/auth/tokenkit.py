"""Helpers to mint tokens of every shape, good and bad, for the verifier tests (registered as secrets)."""

from __future__ import annotations

import base64
import datetime
import hmac
import json
import time
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k3sreg.auth.certs import Issued
from tests.unit.auth.conftest import SECRETS

ISSUER, SERVICE = "test-issuer", "test-registry"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def claims(now: float | None = None, **over: Any) -> dict[str, Any]:
    """Good claims for SERVICE from ISSUER granting pull on `a`, overridable."""
    t = int(now if now is not None else time.time())
    base: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": t + 300, "nbf": t, "iat": t,
                            "jti": "j", "access": [{"type": "repository", "name": "a", "actions": ["pull"]}]}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def mint(key: Any, body: dict[str, Any], alg: str = "ES256", **headers: Any) -> str:
    """A signed token; `headers` go into the JOSE header."""
    token = jwt.encode(body, key, algorithm=alg, headers=headers)
    SECRETS.add(token)
    return token


def unsigned(body: dict[str, Any], **headers: Any) -> str:
    """An `alg: none` token."""
    token = f"{b64url(json.dumps({'alg': 'none', **headers}).encode())}.{b64url(json.dumps(body).encode())}."
    SECRETS.add(token)
    return token


def hmac_with(secret: bytes, body: dict[str, Any], **headers: Any) -> str:
    """An HS256 token whose secret is `secret` (key confusion: the public key's PEM), built by hand since PyJWT
    rightly refuses to do it."""
    signing_input = f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT', **headers}).encode())}." \
                    f"{b64url(json.dumps(body).encode())}"
    mac = hmac.new(secret, signing_input.encode(), "sha256").digest()
    token = f"{signing_input}.{b64url(mac)}"
    SECRETS.add(token)
    return token


def cert_for(key: ec.EllipticCurvePrivateKey, issuer: Issued | None, name: str, ca: bool = False,
             path_length: int | None = None, days: float = 30, start_days: float = -1) -> Issued:
    """A certificate for `key`, signed by `issuer` (self-signed when None)."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(days=start_days))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True))
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return Issued(cert, key)


def new_key() -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    SECRETS.add(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode())
    return key
