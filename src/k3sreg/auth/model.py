"""The nouns of access control: actions, what a request needs (`Access`), who asks (`Principal`), and why a
request is turned away (`Denial`). Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

PULL, PUSH, DELETE = "pull", "push", "delete"
REPOSITORY_ACTIONS = (PULL, PUSH, DELETE)
"""The actions on a repository, in the order scopes list them."""
ANY_ACTION = "*"
"""In a token's `access` claim: every action on that resource (Distribution's rule); `registry:catalog:*` needs it."""


@dataclass(frozen=True, order=True)
class Access:
    """One action on one resource: `repository` + name + `pull`, or `registry` + `catalog` + `*`."""

    type: str
    name: str
    action: str


CATALOG = Access("registry", "catalog", ANY_ACTION)
"""What `GET /v2/_catalog` needs."""


def repository_access(name: str, *actions: str) -> tuple[Access, ...]:
    """`Access` items for `actions` on repository `name`."""
    return tuple(Access("repository", name, a) for a in actions)


@dataclass(frozen=True)
class Principal:
    """Who a request acts for. `name` None is the anonymous caller.

    `grants` is what a verified token allows (None when the caller proved a password: the access rules decide).
    """

    name: str | None
    method: str  # "basic", "token" or "anonymous"
    grants: frozenset[Access] | None = None
    expires: float | None = None  # when the token stops being valid (epoch seconds); None for passwords

    @property
    def anonymous(self) -> bool:
        """True for a caller who proved nothing."""
        return self.name is None

    def granted(self, need: Access) -> bool:
        """True when the token's grants cover `need` (an `*` action on the same resource covers any action)."""
        if self.grants is None:
            return False
        return need in self.grants or Access(need.type, need.name, ANY_ACTION) in self.grants


ANONYMOUS = Principal(None, "anonymous")


class Reason(Enum):
    """Why a request was turned away; `value` is the phrase for the log line (never the secret)."""

    MISSING = "no credentials"
    SEVERAL_HEADERS = "more than one Authorization header"
    TOO_LONG = "Authorization header too long"
    WRONG_SCHEME = "wrong Authorization scheme"
    BAD_BASE64 = "Basic credentials are not valid base64"
    BAD_ENCODING = "Basic credentials are not UTF-8"
    NO_COLON = "Basic credentials have no colon"
    EMPTY_USER = "empty user name"
    EMPTY_PASSWORD = "empty password"
    UNKNOWN_USER = "unknown user"
    WRONG_PASSWORD = "wrong password"
    UNUSABLE_ENTRY = "the user's htpasswd entry is not bcrypt"
    RATE_LIMITED = "too many failed logins from this address"
    TOKEN_MALFORMED = "malformed token"
    TOKEN_ALGORITHM = "token algorithm not allowed"
    TOKEN_KEY = "token signing key not trusted"
    TOKEN_CHAIN = "token certificate chain does not reach a trusted root"
    TOKEN_SIGNATURE = "bad token signature"
    TOKEN_EXPIRED = "token expired"
    TOKEN_NOT_YET_VALID = "token not valid yet"
    TOKEN_AUDIENCE = "token is for another service"
    TOKEN_ISSUER = "token from an untrusted issuer"
    INSUFFICIENT_SCOPE = "not allowed"


INVALID_TOKEN_REASONS = frozenset({
    Reason.TOKEN_MALFORMED, Reason.TOKEN_ALGORITHM, Reason.TOKEN_KEY, Reason.TOKEN_CHAIN, Reason.TOKEN_SIGNATURE,
    Reason.TOKEN_EXPIRED, Reason.TOKEN_NOT_YET_VALID, Reason.TOKEN_AUDIENCE, Reason.TOKEN_ISSUER,
})
"""Reasons that Distribution answers with `error="invalid_token"` in the Bearer challenge."""


@dataclass(frozen=True)
class Denial:
    """A refused request: the reason, the user it claimed to be (if any) and a detail safe to log."""

    reason: Reason
    user: str | None = None
    detail: str = ""
    retry_after: float = 0.0  # seconds, for RATE_LIMITED
    missing: tuple[Access, ...] = field(default=())  # for INSUFFICIENT_SCOPE: what the caller lacked

    def describe(self) -> str:
        """One line for the log: reason, claimed user, detail. Holds no password, token or key."""
        who = f" (user {self.user!r})" if self.user else ""
        more = f": {self.detail}" if self.detail else ""
        return f"{self.reason.value}{who}{more}"
