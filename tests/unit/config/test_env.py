"""REGISTRY_<SECTION>_<KEY> environment overrides, as Distribution applies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3sreg.config import load_settings
from k3sreg.errors import ConfigError

BASE = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(BASE)
    return path


def test_scalar_overrides_on_a_file(config: Path) -> None:
    """Variables replace keys of the file; values are read as YAML scalars (booleans, durations, strings)."""
    s = load_settings(
        config,
        {
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/srv/registry",
            "REGISTRY_HTTP_ADDR": "127.0.0.1:5001",
            "REGISTRY_STORAGE_DELETE_ENABLED": "false",
            "REGISTRY_LOG_LEVEL": "debug",
            "REGISTRY_HTTP_SECRET": "12345",
            "REGISTRY_HTTP_DRAINTIMEOUT": "30s",
            "REGISTRY_LOG_ACCESSLOG_DISABLED": "true",
            "PATH": "/usr/bin",
        },
    )
    assert s.storage.filesystem is not None
    assert s.storage.filesystem.rootdirectory == Path("/srv/registry")
    assert s.http.bind() == ("127.0.0.1", 5001)
    assert s.storage.delete.enabled is False
    assert s.log.level == "debug"
    assert s.http.secret == "12345"
    assert s.http.draintimeout == 30.0
    assert s.log.accesslog.disabled is True


def test_overrides_apply_to_embedded_defaults() -> None:
    """Without a file the variables apply on top of k3sreg's embedded defaults."""
    s = load_settings(None, {"REGISTRY_HTTP_ADDR": ":0", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/tmp/x"})
    assert s.http.bind() == (None, 0)
    assert s.storage.filesystem is not None and s.storage.filesystem.rootdirectory == Path("/tmp/x")
    assert s.storage.delete.enabled is True


def test_registry_storage_selects_a_driver_and_keeps_the_rest(config: Path) -> None:
    """REGISTRY_STORAGE=inmemory replaces the driver; delete and maintenance settings stay."""
    s = load_settings(config, {"REGISTRY_STORAGE": "inmemory"})
    assert s.storage.driver == "inmemory"
    assert s.storage.filesystem is None
    assert s.storage.delete.enabled is True


def test_driver_switch_then_its_parameters(config: Path) -> None:
    """Variables apply in name order, so REGISTRY_STORAGE=s3 comes before REGISTRY_STORAGE_S3_BUCKET."""
    s = load_settings(
        config,
        {"REGISTRY_STORAGE_S3_BUCKET": "b", "REGISTRY_STORAGE_S3_REGION": "eu-west-1", "REGISTRY_STORAGE": "s3"},
    )
    assert s.storage.driver == "s3" and s.storage.s3 is not None
    assert (s.storage.s3.bucket, s.storage.s3.region) == ("b", "eu-west-1")


def test_sections_created_from_nothing(config: Path) -> None:
    """A variable may create a whole section the file does not have (proxy, auth, tls, headers)."""
    s = load_settings(
        config,
        {
            "REGISTRY_PROXY_REMOTEURL": "https://registry-1.docker.io",
            "REGISTRY_PROXY_TTL": "0",
            "REGISTRY_AUTH_HTPASSWD_REALM": "basic-realm",
            "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd",
            "REGISTRY_HTTP_TLS_CERTIFICATE": "/certs/tls.crt",
            "REGISTRY_HTTP_TLS_KEY": "/certs/tls.key",
            "REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS": "[DENY]",
            "REGISTRY_LOG_FIELDS_ENVIRONMENT": "staging",
        },
    )
    assert s.proxy is not None and s.proxy.remoteurl == "https://registry-1.docker.io" and s.proxy.ttl is None
    assert s.auth is not None and s.auth.htpasswd is not None and s.auth.htpasswd.path == "/auth/htpasswd"
    assert s.http.tls is not None and s.http.tls.key == "/certs/tls.key"
    assert s.http.headers == {"x-frame-options": ["DENY"]}
    assert s.log.fields == {"environment": "staging"}


def test_list_items_by_index(config: Path) -> None:
    """List items are addressed by index; the next free index appends an item."""
    s = load_settings(
        config,
        {
            "REGISTRY_UPSTREAMS_0_NAME": "docker.io",
            "REGISTRY_UPSTREAMS_0_URL": "https://registry-1.docker.io",
            "REGISTRY_UPSTREAMS_1_NAME": "ghcr.io",
            "REGISTRY_UPSTREAMS_1_URL": "https://ghcr.io",
            "REGISTRY_UPSTREAMS_1_TAGTTL": "1m",
            "REGISTRY_NAMES": "[registry.localhost, '127.0.0.1:30500']",
        },
    )
    assert [(u.name, u.url) for u in s.upstreams] == [
        ("docker.io", "https://registry-1.docker.io"),
        ("ghcr.io", "https://ghcr.io"),
    ]
    assert s.upstreams[1].tagttl == 60.0
    assert s.names == ["registry.localhost", "127.0.0.1:30500"]


def test_unknown_variable_is_a_problem_with_a_suggestion(config: Path) -> None:
    """A misspelt REGISTRY_ variable is reported like an unknown key, naming the variable it resembles."""
    with pytest.raises(ConfigError) as info:
        load_settings(
            config,
            {
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTRY": "/x",
                "REGISTRY_HTTP_ADR": ":1",
                "REGISTRY_NOPE": "1",
            },
        )
    assert info.value.problems == [
        "REGISTRY_HTTP_ADR: unknown key 'http.adr'; did you mean REGISTRY_HTTP_ADDR?",
        "REGISTRY_NOPE: unknown key 'nope'",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTRY: unknown key 'storage.filesystem.rootdirectry'; "
        "did you mean REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY?",
    ]


def test_bad_value_names_the_variable(config: Path) -> None:
    """A value that does not fit names both the key path and the variable that set it."""
    with pytest.raises(ConfigError) as info:
        load_settings(config, {"REGISTRY_HTTP_ADDR": "5000", "REGISTRY_STORAGE_DELETE_ENABLED": "maybe"})
    assert info.value.problems == [
        "storage.delete.enabled (from REGISTRY_STORAGE_DELETE_ENABLED): expected true or false, got 'maybe'",
        "http.addr (from REGISTRY_HTTP_ADDR): expected host:port such as ':5000' or '127.0.0.1:5000', got 5000",
    ]


def test_second_driver_from_the_environment_is_reported(config: Path) -> None:
    """Adding S3 parameters to a filesystem config makes two drivers, which is reported with the variable."""
    with pytest.raises(ConfigError) as info:
        load_settings(config, {"REGISTRY_STORAGE_S3_BUCKET": "b"})
    assert info.value.problems[0] == (
        "storage (from REGISTRY_STORAGE_S3_BUCKET): exactly one storage driver is required, got 2: filesystem, s3"
    )


def test_kubernetes_service_link_variables_are_ignored(config: Path) -> None:
    """Variables Kubernetes injects for a Service named `registry` do not stop start-up."""
    s = load_settings(
        config,
        {
            "REGISTRY_PORT": "tcp://10.43.0.10:5000",
            "REGISTRY_PORT_5000_TCP_ADDR": "10.43.0.10",
            "REGISTRY_SERVICE_HOST": "10.43.0.10",
            "REGISTRY_SERVICE_PORT": "5000",
            "REGISTRY_SERVICE_PORT_HTTP": "5000",
        },
    )
    assert s.http.addr == ":5000"


def test_invalid_yaml_value_and_bad_index(config: Path) -> None:
    """A value that is not YAML, an index past the end, and a key below a scalar are each one problem."""
    with pytest.raises(ConfigError) as info:
        load_settings(
            config,
            {"REGISTRY_LOG_FIELDS": "{a: [", "REGISTRY_UPSTREAMS_3_NAME": "x", "REGISTRY_HTTP_ADDR_PORT": "1"},
        )
    found = info.value.problems
    assert len(found) == 3
    assert found[0] == "REGISTRY_HTTP_ADDR_PORT: 'http.addr' is a single value, it has no key 'port'"
    assert found[1].startswith("REGISTRY_LOG_FIELDS: the value is not valid YAML (")
    assert found[2] == "REGISTRY_UPSTREAMS_3_NAME: '3' is not an index of upstreams (0 to 0)"


def test_os_environ_is_the_default(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """env None reads the process environment."""
    monkeypatch.setenv("REGISTRY_HTTP_ADDR", ":5999")
    assert load_settings(config).http.bind() == (None, 5999)
