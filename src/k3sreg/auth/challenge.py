"""`WWW-Authenticate` values as Distribution writes them, so every client runs its usual flow.

    Basic realm="<realm>"
    Bearer realm="<realm>",service="<service>"[,scope="<scopes>"][,error="invalid_token"|"insufficient_scope"]

Values are quoted as Go's `%q` quotes them. With `autoredirect`, the realm is built from the request's host:
`https://<host><autoredirectpath>`, or the scheme of `X-Forwarded-Proto` when a proxy sends it (Distribution 3).
"""

from __future__ import annotations

from collections.abc import Sequence

from k3sreg.auth.model import INVALID_TOKEN_REASONS, Access, Denial, Reason
from k3sreg.auth.scopes import format_scopes


def go_quote(text: str) -> str:
    """`text` in double quotes with `\\`, `"` and control characters escaped, as Go's `%q` does."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0x80 <= code < 0xA0 or not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def basic_challenge(realm: str) -> str:
    """The Basic challenge of `auth.htpasswd`."""
    return f"Basic realm={go_quote(realm)}"


def bearer_error(denial: Denial | None) -> str | None:
    """The `error` parameter Distribution sends for this denial: invalid_token, insufficient_scope or none."""
    if denial is None:
        return None
    if denial.reason in INVALID_TOKEN_REASONS:
        return "invalid_token"
    if denial.reason is Reason.INSUFFICIENT_SCOPE:
        return "insufficient_scope"
    return None


def bearer_challenge(realm: str, service: str, need: Sequence[Access], denial: Denial | None = None) -> str:
    """The Bearer challenge of `auth.token` for a request that needs `need` and was refused for `denial`."""
    value = f"Bearer realm={go_quote(realm)},service={go_quote(service)}"
    scope = format_scopes(need)
    if scope:
        value += f",scope={go_quote(scope)}"
    error = bearer_error(denial)
    if error:
        value += f",error={go_quote(error)}"
    return value


def auto_realm(host: str, path: str, forwarded_proto: str | None = None) -> str:
    """The realm `autoredirect` sends: the token path on the host the client used."""
    scheme = forwarded_proto.split(",")[0].strip() if forwarded_proto else "https"
    return f"{scheme or 'https'}://{host}{path}"
