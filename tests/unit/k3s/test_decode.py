"""Decoding registries.yaml with yaml.v2's rules: lenient keys, strict types, and what K3s ignores."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from k3sreg.errors import ConfigError
from k3sreg.k3s.decode import decode_text, load_registries, load_registries_file


def codes(text: str) -> list[tuple[str, str, int | None]]:
    """(code, path, line) of every decode finding."""
    return [(f.code, f.path, f.line) for f in decode_text(textwrap.dedent(text)).findings]


def test_valid_file_decodes_every_field() -> None:
    """All schema keys land in the model; YAML 1.1 booleans and unquoted numbers are accepted."""
    reg = load_registries(textwrap.dedent("""
        mirrors:
          docker.io:
            endpoint: ["http://127.0.0.1:5000", m.example.com]
            rewrite: {"^a/(.*)": "b/$1"}
          quay.io:
        configs:
          m.example.com:
            auth: {username: yes, password: 12345, auth: dTpw, identity_token: tok}
            tls: {ca_file: /ca, cert_file: /c, key_file: /k, insecure_skip_verify: on}
          bare.example.com:
        auths:
          x: {username: u}
    """))
    assert reg.mirrors["docker.io"].endpoint == ["http://127.0.0.1:5000", "m.example.com"]
    assert reg.mirrors["quay.io"].endpoint == []
    auth = reg.configs["m.example.com"].auth
    assert auth is not None and (auth.username, auth.password) == ("yes", "12345")
    tls = reg.configs["m.example.com"].tls
    assert tls is not None and tls.insecure_skip_verify is True
    assert reg.configs["bare.example.com"].tls is None and reg.auths["x"].username == "u"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('configs:\n  h:\n    tls:\n      insecure_skip_verify: "true"\n', "configs.h.tls.insecure_skip_verify"),
        ("configs:\n  h:\n    tls:\n      insecure_skip_verify: 1\n", "configs.h.tls.insecure_skip_verify"),
        ("mirrors:\n  docker.io:\n    endpoint: https://x\n", 'mirrors."docker.io".endpoint'),
        ("mirrors:\n  - docker.io\n", "mirrors"),
        ("configs:\n  reg: 5\n", "configs.reg"),
        ("mirrors:\n  docker.io:\n    endpoint:\n      - {a: b}\n", 'mirrors."docker.io".endpoint[0]'),
        ("- a\n", "(top level)"),
    ],
)
def test_wrong_types_are_fatal(text: str, path: str) -> None:
    """Values yaml.v2 cannot decode stop the agent: reported as errors with their key path, and load fails."""
    decoded = decode_text(text)
    assert decoded.fatal
    assert [(f.code, f.path) for f in decoded.findings] == [("wrong-type", path)]
    with pytest.raises(ConfigError):
        load_registries(text)


def test_unknown_keys_at_every_level_with_suggestions() -> None:
    """Misspellings are errors naming the nearest valid key; the file still decodes (K3s ignores them)."""
    decoded = decode_text(textwrap.dedent("""
        mirror:
          docker.io: {}
        mirrors:
          docker.io:
            endpoints: [x]
            Endpoint: [y]
        configs:
          h:
            auth: {token: abc, username: u}
            tls: {insecureskipverify: true, insecure-skip-verify: true, ca: /x}
            TLS: {}
    """))
    assert not decoded.fatal
    fixes = {f.path: f.fix for f in decoded.findings}
    assert "`mirrors`" in fixes["mirror"]
    assert "`endpoint`" in fixes['mirrors."docker.io".endpoints']
    assert "case-sensitive" in fixes['mirrors."docker.io".Endpoint']
    assert "username" in fixes["configs.h.auth.token"]
    assert "`insecure_skip_verify`" in fixes["configs.h.tls.insecureskipverify"]
    assert "`insecure_skip_verify`" in fixes["configs.h.tls.insecure-skip-verify"]
    assert "`ca_file`" in fixes["configs.h.tls.ca"]
    assert "`tls`" in fixes["configs.h.TLS"]
    tls = decoded.registries.configs["h"].tls
    assert tls is not None and tls.is_empty()


def test_duplicate_keys_last_wins_and_reported() -> None:
    """A repeated registry is reported with both lines; the later entry replaces the earlier one."""
    decoded = decode_text("mirrors:\n  docker.io:\n    endpoint: [a]\n  docker.io:\n    endpoint: [b]\n")
    assert [(f.code, f.line) for f in decoded.findings] == [("duplicate-key", 4)]
    assert "line 2" in decoded.findings[0].message
    assert decoded.registries.mirrors["docker.io"].endpoint == ["b"]


def test_tabs_and_unquoted_star_are_fatal_but_the_rest_is_checked() -> None:
    """Tabs and `*:` break the YAML; both are reported by line and the repaired text is still checked."""
    decoded = decode_text('mirrors:\n  *:\n    endpoint: [a]\nconfigs:\n\th:\n\t  tls: {insecureskipverify: true}\n')
    assert decoded.fatal
    assert [(f.code, f.line) for f in decoded.findings] == [
        ("syntax", 2), ("syntax", 5), ("syntax", 6), ("unknown-key", 6)]
    assert decoded.registries.mirrors["*"].endpoint == ["a"]


def test_plain_yaml_syntax_error_has_a_position() -> None:
    """Other syntax errors are reported once with PyYAML's position."""
    decoded = decode_text("configs:\n  h:\n    tls:\n      insecure\n      skip_verify: true\n")
    assert decoded.fatal
    assert decoded.findings[0].code == "syntax" and decoded.findings[0].line == 5


def test_comment_cut_secret_is_warned() -> None:
    """`password: abc #def` keeps only `abc`: a warning on the secret field."""
    found = codes("configs:\n  h:\n    auth:\n      username: u\n      password: abc #def\n")
    assert found == [("comment-cut", "configs.h.auth.password", 5)]
    assert decode_text("configs:\n  h:\n    auth:\n      password: 'abc #def'\n").findings == []


def test_flattened_file_reports_lost_indentation() -> None:
    """Registry names and nested keys at the top level point at lost indentation; nothing is configured."""
    found = codes('mirrors:\n"docker.io":\nendpoint:\n- "http://127.0.0.1:30500"\n'
                  "configs:\ntls:\ninsecureskipverify: true\n")
    assert ("unknown-key", '"docker.io"', 2) in found
    assert ("nothing-configured", "(top level)", 1) in found
    fixes = [f.fix for f in decode_text("insecureskipverify: true\n").findings]
    assert any("insecure_skip_verify" in fix for fix in fixes)


def test_merge_keys_and_aliases_are_followed() -> None:
    """YAML anchors and `<<` merges decode like yaml.v2 and are not duplicate keys."""
    reg = load_registries(textwrap.dedent("""
        configs:
          a: &base
            tls: {ca_file: /ca}
          b:
            <<: *base
            auth: {username: u}
    """))
    assert reg.configs["b"].tls is not None and reg.configs["b"].tls.ca_file == "/ca"


def test_missing_file_is_empty(tmp_path: Path) -> None:
    """A node without registries.yaml has an empty configuration; an empty file too."""
    assert load_registries_file(tmp_path / "nope.yaml").mirrors == {}
    (tmp_path / "empty.yaml").write_text("")
    assert load_registries_file(tmp_path / "empty.yaml").configs == {}


def test_key_at_the_wrong_level_says_where_it_belongs() -> None:
    """A valid key one level off (`insecure_skip_verify` directly under the host) names its section."""
    decoded = decode_text("configs:\n  h:\n    insecureSkipVerify: true\n    username: u\n")
    fixes = {f.path: f.fix for f in decoded.findings}
    assert fixes["configs.h.insecureSkipVerify"] == "move it under `tls:` and rename it to `insecure_skip_verify`"
    assert fixes["configs.h.username"] == "move it under `auth:`"


def test_only_the_first_document_counts() -> None:
    """A second `---` document is ignored by K3s: a warning, and its content is not decoded."""
    decoded = decode_text("mirrors:\n  docker.io:\n    endpoint: [a]\n---\nmirrors:\n  quay.io:\n")
    assert [(f.code, f.severity) for f in decoded.findings] == [("extra-document", "warning")]
    assert list(decoded.registries.mirrors) == ["docker.io"]
