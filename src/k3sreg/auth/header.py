"""Strict parsing of the Authorization header: Basic credentials or a Bearer token, else a `Denial`.

Every malformed input is a denial, never an exception: several headers, a header over `MAX_AUTHORIZATION`
characters, an unknown scheme, bad base64, no colon, bytes that are not UTF-8. The scheme is case-insensitive
and followed by exactly one space, as Go's `Request.BasicAuth` reads it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from k3sreg.auth.model import Denial, Reason

MAX_AUTHORIZATION = 8192
"""Longest Authorization value looked at: room for a token with a certificate chain, no room for abuse."""


@dataclass(frozen=True)
class BasicCredentials:
    """A user name and password from `Authorization: Basic`; `repr` never shows the password."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"BasicCredentials(user={self.user!r}, password=<hidden>)"


@dataclass(frozen=True)
class BearerToken:
    """The raw token from `Authorization: Bearer`; `repr` never shows it."""

    token: str

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"


Credentials = BasicCredentials | BearerToken


def parse_authorization(values: Sequence[str]) -> Credentials | Denial:
    """The credentials carried by the request's Authorization header values (all of them, as received)."""
    if not values:
        return Denial(Reason.MISSING)
    if len(values) > 1:
        return Denial(Reason.SEVERAL_HEADERS, detail=f"{len(values)} headers")
    value = values[0]
    if len(value) > MAX_AUTHORIZATION:
        return Denial(Reason.TOO_LONG, detail=f"{len(value)} characters, at most {MAX_AUTHORIZATION}")
    scheme, sep, rest = value.partition(" ")
    if not sep:
        return Denial(Reason.WRONG_SCHEME, detail="no scheme")
    kind = scheme.lower()
    if kind == "basic":
        return _basic(rest)
    if kind == "bearer":
        if not rest or " " in rest or "\t" in rest:
            return Denial(Reason.TOKEN_MALFORMED, detail="the Bearer value must be one token")
        return BearerToken(rest)
    return Denial(Reason.WRONG_SCHEME, detail=f"scheme {scheme[:20]!r}")


def _basic(encoded: str) -> BasicCredentials | Denial:
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return Denial(Reason.BAD_BASE64)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Denial(Reason.BAD_ENCODING)
    user, colon, password = text.partition(":")
    if not colon:
        return Denial(Reason.NO_COLON)
    if not user:
        return Denial(Reason.EMPTY_USER)
    if not password:
        return Denial(Reason.EMPTY_PASSWORD, user=user)
    return BasicCredentials(user, password)


def basic_authorization(user: str, password: str) -> str:
    """The `Authorization` value for Basic credentials (for clients and tests)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
