"""Authorization header parsing: every malformed header is a precise denial, never an exception."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k3sreg.auth.header import (
    MAX_AUTHORIZATION,
    BasicCredentials,
    BearerToken,
    basic_authorization,
    parse_authorization,
)
from k3sreg.auth.model import Denial, Reason


def b64(text: bytes) -> str:
    return base64.b64encode(text).decode()


def test_basic_credentials_are_read() -> None:
    """A well-formed Basic header yields the user and the password (which may hold colons)."""
    found = parse_authorization([basic_authorization("alice", "pa:ss")])
    assert found == BasicCredentials("alice", "pa:ss")


def test_scheme_is_case_insensitive() -> None:
    """`basic` and `BEARER` are read as Go reads them."""
    assert parse_authorization(["basic " + b64(b"a:b")]) == BasicCredentials("a", "b")
    assert parse_authorization(["BEARER abc.def.ghi"]) == BearerToken("abc.def.ghi")


@pytest.mark.parametrize(("values", "reason"), [
    ([], Reason.MISSING),
    (["Basic " + b64(b"alice")], Reason.NO_COLON),
    (["Basic not*base64"], Reason.BAD_BASE64),
    (["Basic " + b64(b"alice:pw")[:-1]], Reason.BAD_BASE64),
    (["Basic " + b64(b"alice:pw")[:4] + "!" + b64(b"alice:pw")[4:]], Reason.BAD_BASE64),  # Go rejects, not skips
    (["Basic caf\u00e9"], Reason.BAD_BASE64),
    (["Basic " + b64(b"\xff\xfe:pw")], Reason.BAD_ENCODING),
    (["Digest " + b64(b"alice:pw")], Reason.WRONG_SCHEME),
    (["Basic"], Reason.WRONG_SCHEME),
    ([b64(b"alice:pw")], Reason.WRONG_SCHEME),
    ([basic_authorization("alice", "pw"), basic_authorization("alice", "pw")], Reason.SEVERAL_HEADERS),
    ([basic_authorization("alice", "pw"), "Bearer x.y.z"], Reason.SEVERAL_HEADERS),
    (["Basic " + b64(b"alice:" + b"x" * MAX_AUTHORIZATION)], Reason.TOO_LONG),
    (["Basic " + b64(b":pw")], Reason.EMPTY_USER),
    (["Basic " + b64(b"alice:")], Reason.EMPTY_PASSWORD),
    (["Bearer "], Reason.TOKEN_MALFORMED),
    (["Bearer a b"], Reason.TOKEN_MALFORMED),
])
def test_malformed_headers_are_denials(values: list[str], reason: Reason) -> None:
    """No colon, bad base64, wrong scheme, several headers, a huge header... each is its own denial."""
    found = parse_authorization(values)
    assert isinstance(found, Denial) and found.reason is reason


def test_header_at_the_cap_is_still_read() -> None:
    """The length cap refuses only what is over it."""
    value = "Bearer " + "a" * (MAX_AUTHORIZATION - len("Bearer "))
    assert isinstance(parse_authorization([value]), BearerToken)


@given(st.lists(st.text(max_size=300), max_size=3))
def test_any_header_gives_an_answer_not_an_exception(values: list[str]) -> None:
    """Whatever the header values, the parser answers with credentials or a denial."""
    assert isinstance(parse_authorization(values), BasicCredentials | BearerToken | Denial)


def test_reprs_hide_the_secret() -> None:
    """A repr of credentials never shows the password or the token."""
    assert "hunter2" not in repr(BasicCredentials("alice", "hunter2"))
    assert "tok.en.value" not in repr(BearerToken("tok.en.value"))
