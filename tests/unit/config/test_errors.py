"""Settings problems: every one reported at once, one line each, with the key path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3sreg.config import load_settings, parse_settings
from k3sreg.errors import ConfigError


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {})
    return info.value.problems


def test_silly_auth_with_no_parameters_is_reported(tmp_path: Path) -> None:
    """`auth: silly` with nothing under it is a choice of type with its required keys missing."""
    found = problems(tmp_path, "version: 0.1\nstorage: inmemory\nauth:\n  silly:\n")
    assert found == ["auth.silly.realm: required key is missing", "auth.silly.service: required key is missing"]


def test_many_problems_reported_together_with_suggestions(tmp_path: Path) -> None:
    """Misspelt keys, wrong types and bad values are all listed at once, each with its key path and fix."""
    found = problems(
        tmp_path,
        """\
version: 0.1
log:
  levl: info
  formatter: xml
storage:
  filesystem:
    rootdirectry: /var/lib/registry
  delete:
    enabled: maybe
  maintenance:
    uploadpurging:
      age: 3600
http:
  addr: 5000
  tls:
    certificate: /x.crt
  headrs: {}
stroage: {}
""",
    )
    assert found == [
        "log.formatter: expected one of 'text', 'json' or 'logstash', got 'xml'",
        "log.levl: unknown key; did you mean 'level'?",
        "storage.filesystem.rootdirectry: unknown key; did you mean 'rootdirectory'?",
        "storage.delete.enabled: expected true or false, got 'maybe'",
        "storage.maintenance.uploadpurging.age: a bare number is read as nanoseconds, as Go does, "
        "so 3600 means 3600ns; write the unit, e.g. '3600s'",
        "http.addr: expected host:port such as ':5000' or '127.0.0.1:5000', got 5000",
        "http.tls: 'certificate' and 'key' go together; add 'key' (a PEM file path)",
        "http.headrs: unknown key; did you mean 'headers'?",
        "stroage: unknown key; did you mean 'storage'?",
    ]


def test_unknown_key_without_a_near_match_lists_the_valid_ones(tmp_path: Path) -> None:
    """A key that resembles nothing gets the list of keys valid at that place."""
    found = problems(tmp_path, "version: 0.1\nstorage: inmemory\nlog:\n  zzz: 1\n")
    assert found == ["log.zzz: unknown key; valid keys here: level, formatter, fields, accesslog, hooks, reportcaller"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 0.1\n", "storage: exactly one storage driver is required (filesystem, inmemory or s3), got none"),
        (
            "version: 0.1\nstorage:\n  delete:\n    enabled: true\n",
            "storage: exactly one storage driver is required (filesystem, inmemory or s3), got none",
        ),
        (
            "version: 0.1\nstorage:\n  filesystem:\n  inmemory:\n",
            "storage: exactly one storage driver is required, got 2: filesystem, inmemory",
        ),
        (
            "version: 0.1\nstorage:\n  azure:\n    accountname: x\n",
            "storage.azure: the azure driver is not supported by k3sreg; use filesystem, inmemory or s3",
        ),
        ("version: 0.1\nstorage:\n  filesytem:\n", "storage.filesytem: unknown key; did you mean 'filesystem'?"),
        ("storage: inmemory\n", "version: required; add 'version: 0.1' at the top"),
        (
            "version: 0.2\nstorage: inmemory\n",
            "version: only version 0.1 exists (as in Distribution), got '0.2'; write version: 0.1",
        ),
        (
            "version: 0.1\nstorage: inmemory\nauth:\n  htpasswd:\n    realm: r\n    path: /p\n  silly:\n"
            "    realm: r\n    service: s\n",
            "auth: exactly one of htpasswd, token or silly is required, got htpasswd, silly",
        ),
        (
            "version: 0.1\nstorage: inmemory\nauth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n",
            "auth.token: set 'rootcertbundle' (PEM certificates of the token signer), 'jwks', or 'builtin' "
            "(k3sreg issues the tokens)",
        ),
        (
            "version: 0.1\nstorage: inmemory\nhttp:\n  host: registry.example.com\n",
            "http.host: expected the external URL of the registry such as 'https://registry.example.com', "
            "got 'registry.example.com'",
        ),
        (
            "version: 0.1\nstorage: inmemory\nhttp:\n  tls:\n    clientcas: [/ca.pem]\n",
            "http.tls: 'clientcas' needs http.tls.certificate and http.tls.key",
        ),
        ("version: 0.1\nstorage: inmemory\nhttp: 5000\n", "http: expected a mapping of keys, got 5000"),
        (
            "version: 0.1\nstorage: inmemory\nhttp:\n  headers:\n    X-A: {a: 1}\n",
            "http.headers.X-A: expected a list, got a mapping",
        ),
        (
            "version: 0.1\nstorage: inmemory\nlimits:\n  manifestsize: 4 megs\n",
            "limits.manifestsize: expected a size such as 4194304, '4MiB' or '512M', got '4 megs'",
        ),
        (
            "version: 0.1\nstorage: inmemory\nhealth:\n  storagedriver:\n    threshold: -1\n",
            "health.storagedriver.threshold: must be greater than or equal to 0, got -1",
        ),
        (
            "version: 0.1\nstorage: inmemory\nproxy:\n  remoteurl: registry-1.docker.io\n",
            "proxy.remoteurl: expected an http:// or https:// URL such as 'https://registry-1.docker.io', "
            "got 'registry-1.docker.io'",
        ),
        ("- a\n- b\n", "expected a mapping of sections (version, log, storage, http...), got a list"),
    ],
)
def test_single_problems(tmp_path: Path, text: str, expected: str) -> None:
    """Each kind of mistake gives one line naming the key path and the fix."""
    found = problems(tmp_path, text)
    assert [p.split(": ", 1)[1] if p.startswith(str(tmp_path)) else p for p in found] == [expected]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error is one problem naming the file, line and column."""
    found = problems(tmp_path, "version: 0.1\nstorage:\n  filesystem: [\n")
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'config.yml'}:4:1: YAML syntax error:")


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing config file is one problem naming the path and the reason."""
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.yml", {})
    assert info.value.problems == [f"{tmp_path / 'nope.yml'}: cannot read the config file: No such file or directory"]


def test_empty_file_reports_missing_version_and_storage(tmp_path: Path) -> None:
    """An empty file lists both things a config cannot do without."""
    assert problems(tmp_path, "") == [
        "version: required; add 'version: 0.1' at the top",
        "storage: exactly one storage driver is required (filesystem, inmemory or s3), got none",
    ]


def test_config_error_message_is_one_line(tmp_path: Path) -> None:
    """str(ConfigError) joins the problems on one line, as the CLI prints it."""
    found = problems(tmp_path, "version: 0.1\nstorage: inmemory\nlog:\n  levl: x\nhttp:\n  adr: x\n")
    error = ConfigError(found)
    assert "\n" not in str(error)
    assert str(error) == ("log.levl: unknown key; did you mean 'level'?; http.adr: unknown key; did you mean 'addr'?")


def test_parse_settings_reports_like_load_settings() -> None:
    """parse_settings validates an in-memory document with the same messages."""
    with pytest.raises(ConfigError) as info:
        parse_settings({"version": "0.1", "storage": {"inmemory": None}, "htp": {}}, {}, source="configmap")
    assert info.value.problems == ["htp: unknown key; did you mean 'http'?"]
    assert parse_settings({"version": "0.1", "storage": "inmemory"}, {}).storage.driver == "inmemory"
