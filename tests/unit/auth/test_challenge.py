"""WWW-Authenticate values exactly as Distribution writes them."""

from __future__ import annotations

from k3sreg.auth.challenge import auto_realm, basic_challenge, bearer_challenge, go_quote
from k3sreg.auth.model import CATALOG, Access, Denial, Reason
from k3sreg.auth.scopes import Route, required_access


def test_basic_challenge() -> None:
    """`Basic realm="..."`, as htpasswd's challenge."""
    assert basic_challenge("k3sreg realm") == 'Basic realm="k3sreg realm"'


def test_bearer_challenge_without_a_token() -> None:
    """No token: realm, service and the scope the request needs, no error."""
    need = required_access("PUT", Route.MANIFEST, "team/app")
    assert bearer_challenge("https://auth/token", "reg", need, Denial(Reason.MISSING)) == \
        'Bearer realm="https://auth/token",service="reg",scope="repository:team/app:pull,push"'


def test_bearer_challenge_errors() -> None:
    """A bad token gets error="invalid_token", a too narrow one error="insufficient_scope"."""
    need = (Access("repository", "a", "pull"),)
    assert bearer_challenge("r", "s", need, Denial(Reason.TOKEN_EXPIRED)).endswith(',error="invalid_token"')
    assert bearer_challenge("r", "s", need, Denial(Reason.TOKEN_CHAIN)).endswith(',error="invalid_token"')
    assert bearer_challenge("r", "s", need, Denial(Reason.INSUFFICIENT_SCOPE)) == \
        'Bearer realm="r",service="s",scope="repository:a:pull",error="insufficient_scope"'


def test_base_and_catalog_challenges() -> None:
    """`/v2/` has no scope; the catalog asks for registry:catalog:*."""
    assert bearer_challenge("r", "s", ()) == 'Bearer realm="r",service="s"'
    assert bearer_challenge("r", "s", (CATALOG,)) == 'Bearer realm="r",service="s",scope="registry:catalog:*"'


def test_go_quoting() -> None:
    """Quotes, backslashes and control characters are escaped as Go's %q does."""
    assert go_quote('a"b\\c\nd\x01') == '"a\\"b\\\\c\\nd\\x01"'
    assert go_quote("caf\u00e9") == '"caf\u00e9"'


def test_autoredirect_realm() -> None:
    """The realm is the token path on the client's host, https unless a proxy says otherwise."""
    assert auto_realm("reg:5000", "/auth/token") == "https://reg:5000/auth/token"
    assert auto_realm("reg:5000", "/auth/token", "http") == "http://reg:5000/auth/token"
