"""Rewrite application with Go's regexp replacement semantics."""

from __future__ import annotations

import re

from k3sreg.k3s.rewrites import apply_rewrites, expand


def test_go_expansion_rules() -> None:
    """`$1`, `${1}`, `$name`, `$$` expand like Go; `$1x` is the (missing) group named `1x`."""
    m = re.compile(r"^(?P<org>[a-z]+)/(.*)$").match("rancher/pause")
    assert m is not None
    assert expand("x/$2", m) == "x/pause"
    assert expand("${1}_$org", m) == "rancher_rancher"
    assert expand("$1_y", m) == ""
    assert expand("$$1 $9", m) == "$1 "


def test_first_changing_pattern_wins() -> None:
    """The repository is rewritten by a matching pattern; a non-matching map leaves it alone."""
    assert apply_rewrites({"^rancher/(.*)": "mirrored/rancher-$1"}, "rancher/pause") == (
        "mirrored/rancher-pause", "^rancher/(.*)")
    assert apply_rewrites({"^quay/(.*)": "x/$1"}, "library/nginx") == ("library/nginx", None)


def test_go_named_group_syntax_is_accepted() -> None:
    """RE2's `(?<name>...)` is translated for Python's engine."""
    assert apply_rewrites({"^(?<a>lib)rary/(.*)": "${a}/$2"}, "library/nginx")[0] == "lib/nginx"
