"""Digest and name grammar."""

from __future__ import annotations

import pytest

from k3sreg.oci.digest import Digest, InvalidDigest, is_digest
from k3sreg.oci.names import is_valid_tag, is_valid_upload_id, name_problem

HEX = "a" * 64


def test_parses_sha256_and_round_trips() -> None:
    """A canonical sha256 digest parses and prints back unchanged."""
    assert str(Digest.parse(f"sha256:{HEX}")) == f"sha256:{HEX}"


@pytest.mark.parametrize(
    "value", ["sha256:abc", f"md5:{'a' * 32}", f"sha256:{'A' * 64}", "sha256", "", f"sha256:{HEX}0", f"sha256:{HEX}\n",
              f"sha512:{HEX}", f"sha256:{HEX * 2}"])
def test_rejects_malformed_or_unsupported(value: str) -> None:
    """Short, upper-case, unknown-algorithm and empty digests are refused with a reason."""
    with pytest.raises(InvalidDigest):
        Digest.parse(value)


def test_sha512_supported() -> None:
    """sha512 digests of 128 hex digits are accepted."""
    assert Digest.parse("sha512:" + "b" * 128).algorithm == "sha512"


def test_of_computes_sha256() -> None:
    """Digest.of hashes bytes with sha256 by default."""
    assert str(Digest.of(b"")) == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_is_digest_tells_tags_apart() -> None:
    """A reference with ':' is a digest, anything else a tag."""
    assert is_digest(f"sha256:{HEX}") and not is_digest("latest")


@pytest.mark.parametrize("name", ["library/nginx", "a", "a/b/c", "my-org/app_x", "a__b", "a.b/c--d", "x" * 255])
def test_valid_names(name: str) -> None:
    """Names made of lower-case components joined by '/' are valid."""
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "Library/nginx", "a//b", "../etc", "a/../b", "-a", "a-", "a/", "/a", "x" * 256,
                                  "a b", "a:b"])
def test_invalid_names(name: str) -> None:
    """Upper case, '..', '//', leading/trailing separators and names over 255 characters are invalid."""
    assert name_problem(name) is not None


def test_tag_grammar() -> None:
    """Tags are up to 128 word characters, dots and dashes, not starting with '.' or '-'."""
    assert is_valid_tag("v1.2.3-rc_1") and is_valid_tag("a" * 128)
    assert not is_valid_tag("a" * 129) and not is_valid_tag(".x") and not is_valid_tag("-x") and not is_valid_tag("a/b")


@pytest.mark.parametrize("name", ["a\n", "library/nginx\n", "a\nb"])
def test_a_trailing_newline_is_not_part_of_a_valid_name(name: str) -> None:
    """The grammar matches the whole name: a newline (which `$` would let through) makes it invalid."""
    assert name_problem(name) is not None


def test_a_trailing_newline_is_not_part_of_a_valid_tag() -> None:
    """The tag grammar matches the whole tag, newline included."""
    assert not is_valid_tag("latest\n")


@pytest.mark.parametrize("value", ["6f1c2b8e-9a1d-4a52-8a33-3c1b0e7e3a10", "abc", "a.b", "a=b", "A_b-1", "x" * 255])
def test_upload_ids_distribution_accepts(value: str) -> None:
    """UUIDs (k3sreg's and Distribution's) and anything of Distribution's id alphabet are upload ids."""
    assert is_valid_upload_id(value)


@pytest.mark.parametrize("value", ["", ".", "..", ".x", "a\x00b", "\x00", "x" * 256, "a/b", "a b", "a\n", "é"])
def test_upload_ids_that_are_no_file_name(value: str) -> None:
    """Empty, dot-led, NUL, '/', non-ASCII and ids longer than one path component (255 bytes) are refused."""
    assert not is_valid_upload_id(value)
