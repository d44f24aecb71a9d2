"""Who may see and do what on the web page: the same decisions as the API's, asked with one call per handler.

    await gate.check(request, need) ──► raises the API's refusal (401 with its challenge, 403, 429)
                                    └─► returns which repositories the caller may see (a predicate)

`need` is what the API needs for the same reading or writing (auth.model.Access): nothing to see the list
(proving who you are is enough, as for `/v2/`; the list is then filtered as the catalog is), pull on a
repository to see its page, delete on it to delete a tag. `OpenGate` is the registry without `auth`: anyone
sees everything, and may delete where the API lets anyone delete (storage.delete.enabled, checked by the
handler as the API checks it). With `auth`, the server passes `server.access.AccessGate`, which asks the same
AccessController as the API's middleware.

Deleting also needs a form token (`csrf_token`), so that another site cannot make a logged-in browser post the
form: the token is a random value in a SameSite=Strict cookie, repeated in the form; both must agree.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Sequence
from typing import Protocol

from aiohttp import web

from k3sreg.auth.model import Access

Visible = Callable[[str], bool]
CSRF_COOKIE = "k3sreg_form"
CSRF_FIELD = "form_token"


class Gate(Protocol):
    async def check(self, request: web.Request, need: Sequence[Access]) -> Visible:
        """Raise the API's refusal unless the caller may do `need`; else which repositories they may see."""
        ...

    async def may(self, request: web.Request, need: Sequence[Access]) -> bool:
        """Whether the caller may do `need` (to offer a button), without logging a refusal."""
        ...


class OpenGate:
    """No access control: every repository is visible and every action allowed."""

    async def check(self, request: web.Request, need: Sequence[Access]) -> Visible:
        return _everything

    async def may(self, request: web.Request, need: Sequence[Access]) -> bool:
        return True


def _everything(_name: str) -> bool:
    return True


def csrf_token(request: web.Request) -> tuple[str, bool]:
    """(the caller's form token, whether it is new and must be set as a cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) == 43 and token.replace("-", "").replace("_", "").isalnum():
        return token, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(response: web.StreamResponse, token: str, path: str, secure: bool) -> None:
    response.set_cookie(CSRF_COOKIE, token, path=path, httponly=True, samesite="Strict", secure=secure or None)


def csrf_ok(request: web.Request, form_value: str) -> bool:
    """Whether a posted form carries the token of the caller's cookie, and came from this site."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), form_value.encode()):
        return False
    # Browsers say where a request comes from; a cross-site one never passes, even with a token.
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
