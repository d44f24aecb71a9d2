"""Shared material for the auth tests: fast bcrypt entries, signing keys, a CA, and the secrets the log scan
looks for (every password, token and private key a test here uses is registered in SECRETS)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from k3sreg.auth.certs import Issued, issue_signer, key_pem, make_ca

PASSWORD = "correct-horse-battery"
OTHER_PASSWORD = "Tr0ub4dor&3"
SECRETS: set[str] = {PASSWORD, OTHER_PASSWORD}
"""Strings that must never show in a log line, an exception or a repr (tests add tokens and keys they make)."""
COST = 4


def bcrypt_entry(user: str, password: str, prefix: bytes = b"$2y$") -> bytes:
    """An htpasswd line for `user` with a cheap bcrypt hash."""
    SECRETS.add(password)
    return user.encode() + b":" + prefix + bcrypt.hashpw(password.encode(), bcrypt.gensalt(COST))[4:]


@pytest.fixture
def htpasswd_path(tmp_path: Path) -> Path:
    """An htpasswd file with alice (PASSWORD) and bob (OTHER_PASSWORD)."""
    path = tmp_path / "htpasswd"
    path.write_bytes(bcrypt_entry("alice", PASSWORD) + b"\n" + bcrypt_entry("bob", OTHER_PASSWORD, b"$2b$") + b"\n")
    return path


@pytest.fixture(scope="session")
def ca() -> Issued:
    """A CA made by k3sreg's own certificate code."""
    issued = make_ca("test CA")
    SECRETS.add(key_pem(issued.key).decode())
    return issued


@pytest.fixture(scope="session")
def signer(ca: Issued) -> Issued:
    """A token-signing certificate issued by `ca`."""
    issued = issue_signer(ca, "test signer")
    SECRETS.add(key_pem(issued.key).decode())
    return issued


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    """A P-256 key with no certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    SECRETS.add(key_pem(key).decode())
    return key


NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp()
"""A fixed clock for token tests (the certificates above are valid then only if made with long lives)."""


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every auth test runs with all logging captured at DEBUG; afterwards no registered secret may be in it."""
    caplog.set_level(logging.DEBUG)
    yield
    leaked = [s for s in SECRETS if s and s in caplog.text]
    assert not leaked, f"{len(leaked)} secret(s) appeared in log output"
