"""The keys the built-in token service signs with.

Two sources, one interface (`Signer`):
- `KeyRing`: keys k3sreg makes itself. On first start, when no key is configured, an ECDSA P-256 key is
  generated into a JSON file (0600; the first of several workers to write it wins, the others read it). `rotate`
  puts a new key in front and keeps the previous one for verification until every token it signed has expired
  (one token lifetime plus the clock leeway). The file is re-read when it changes, so every worker sees a rotation.
- `StaticSigner`: a key the operator gives (`signingkey`), optionally with its certificate chain
  (`signingcert`), which then goes into each token's `x5c` header so that any registry trusting the CA accepts
  the token, docker-registry 2.8 included.

Keys are named by their RFC 7638 thumbprint, which is also the token's `kid`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from k3sreg.auth.keys import PrivateKey, PublicKey, algorithms_for, as_public_key, jwk_thumbprint, same_key
from k3sreg.errors import ConfigError
from k3sreg.localfiles import write_file

LEEWAY = 60.0
"""Clock skew allowed on `exp` and `nbf`, as Distribution allows it."""


@dataclass(frozen=True)
class SigningKey:
    """A private key ready to sign: its `kid`, JWS algorithm and `x5c` chain (base64 DER, may be empty)."""

    kid: str
    key: PrivateKey
    algorithm: str
    x5c: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


class Signer(Protocol):
    """Where the token service gets its current key, and the verifier the keys it signed with."""

    def signing_key(self) -> SigningKey:
        """The key to sign new tokens with."""
        ...

    def public_keys(self) -> dict[str, PublicKey]:
        """Every key a token still valid may have been signed with, by kid."""
        ...


def algorithm_of(key: PrivateKey) -> str:
    """The JWS algorithm a private key signs with (RSA signs RS256)."""
    public = as_public_key(key.public_key())
    algs = sorted(algorithms_for(public)) if public is not None else []
    if not algs:
        raise ValueError("this key type cannot sign tokens")
    return "RS256" if "RS256" in algs else algs[0]


def _pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def _private_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, PrivateKey):
        raise ValueError("not an EC, RSA or Ed25519/Ed448 private key")
    return key


def _thumbprint(key: PrivateKey) -> str:
    public = as_public_key(key.public_key())
    assert public is not None
    return jwk_thumbprint(public)


class StaticSigner:
    """A configured key (PEM), and optionally the certificate chain of that key (PEM, leaf first)."""

    def __init__(self, key_path: str | Path, cert_path: str | Path | None = None) -> None:
        where = "auth.token.builtin.signingkey"
        try:
            key = _private_key(Path(key_path).read_bytes())
            algorithm = algorithm_of(key)
        except OSError as exc:
            raise ConfigError([f"{where}: cannot read {key_path}: {exc.strerror}"]) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError([f"{where}: {key_path} is not a usable unencrypted PEM private key ({exc})"]) from None
        x5c: tuple[str, ...] = ()
        if cert_path:
            chain = _chain(Path(cert_path))
            public = as_public_key(key.public_key())
            leaf_key = as_public_key(chain[0].public_key())
            if public is None or leaf_key is None or not same_key(leaf_key, public):
                raise ConfigError([f"auth.token.builtin.signingcert: the first certificate of {cert_path} is not "
                                   f"for the key in {key_path}; give the key's own certificate first"])
            x5c = tuple(base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in chain)
        self._key = SigningKey(_thumbprint(key), key, algorithm, x5c)

    def signing_key(self) -> SigningKey:
        """The configured key."""
        return self._key

    def public_keys(self) -> dict[str, PublicKey]:
        """The configured key's public half."""
        public = as_public_key(self._key.key.public_key())
        return {self._key.kid: public} if public is not None else {}


def _chain(path: Path) -> list[x509.Certificate]:
    where = "auth.token.builtin.signingcert"
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read {path}: {exc.strerror}"]) from None
    except ValueError:
        raise ConfigError([f"{where}: {path} holds no PEM certificate"]) from None


@dataclass(frozen=True)
class _Entry:
    kid: str
    key: PrivateKey
    created: float
    retire_at: float | None  # None: the current key


class KeyRing:
    """Generated signing keys in a JSON file (see the module docstring). `lifetime`: the token lifetime."""

    def __init__(self, path: str | Path, lifetime: float, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[_Entry] = []
        try:
            if not self.path.exists():
                with contextlib.suppress(FileExistsError):
                    write_file(self.path, self._dump([self._new()]), 0o600, exclusive=True, dir_mode=0o700)
            self._load()
        except OSError as exc:
            raise ConfigError([f"auth.token.builtin.keyring: cannot use {self.path}: {exc.strerror}"]) from None

    def _new(self) -> _Entry:
        key = ec.generate_private_key(ec.SECP256R1())
        return _Entry(_thumbprint(key), key, self._clock(), None)

    def _dump(self, entries: list[_Entry]) -> bytes:
        doc = {"keys": [{"kid": e.kid, "created": e.created, "retire_at": e.retire_at, "key": _pem(e.key)}
                        for e in entries]}
        return json.dumps(doc, indent=1).encode()

    def _parse(self, data: bytes) -> list[_Entry]:
        try:
            doc: Any = json.loads(data)
            entries = [_Entry(k["kid"], _private_key(k["key"].encode()), float(k["created"]),
                              None if k["retire_at"] is None else float(k["retire_at"])) for k in doc["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError([f"auth.token.builtin.keyring: {self.path} is damaged; remove it and k3sreg makes "
                               "a new one (tokens already given out stop working)"]) from None
        if not entries or entries[0].retire_at is not None:
            raise ConfigError([f"auth.token.builtin.keyring: {self.path} has no current key; remove it"])
        return entries

    def _load(self) -> None:
        st = os.stat(self.path)
        self._entries = self._parse(self.path.read_bytes())
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def _fresh(self) -> list[_Entry]:
        # A keyring gone or damaged after start leaves the keys in force: tokens keep working.
        with contextlib.suppress(OSError, ConfigError):
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
                with self._lock:
                    self._load()
        return self._entries

    def signing_key(self) -> SigningKey:
        """The current key."""
        entry = self._fresh()[0]
        return SigningKey(entry.kid, entry.key, "ES256")

    def public_keys(self) -> dict[str, PublicKey]:
        """The current key and the previous ones whose tokens may still be valid."""
        now = self._clock()
        found: dict[str, PublicKey] = {}
        for e in self._fresh():
            public = as_public_key(e.key.public_key())
            if public is not None and (e.retire_at is None or e.retire_at > now):
                found[e.kid] = public
        return found

    def rotate(self) -> str:
        """Make a new current key; the previous one verifies for one more token lifetime. Returns the new kid."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:  # one rotation at a time across processes
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._load()
            now = self._clock()
            retire = now + self.lifetime + LEEWAY
            kept = [e if e.retire_at is not None else _Entry(e.kid, e.key, e.created, retire) for e in self._entries]
            entries = [self._new(), *(e for e in kept if e.retire_at is not None and e.retire_at > now)]
            write_file(self.path, self._dump(entries), 0o600, dir_mode=0o700)
            self._load()
        return entries[0].kid
