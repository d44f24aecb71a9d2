"""k3sreg's own keys: upstreams (issue 3), names, limits, and how `proxy:` folds into the upstream list."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3sreg.config import Settings, load_settings
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.config.values import registry_name_for_url
from k3sreg.errors import ConfigError

ISSUE_EXAMPLE = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
names: [registry.localhost, "127.0.0.1:30500"]
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    username: bob
    password: hunter2
    ttl: 168h
    tagttl: 5m
  - name: ghcr.io
    url: https://ghcr.io
  - name: Quay.io
    url: https://quay.io/
    offline: true
    timeout: 3s
    retries: 0
    maxsize: 20GiB
    tls:
      ca: /certs/quay-ca.pem
      certificate: /certs/client.crt
      key: /certs/client.key
limits:
  manifestsize: 8MiB
  blobsize: 10G
  bodytimeout: 2m
"""


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return load_settings(path, {})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_issue_example_loads(tmp_path: Path) -> None:
    """The upstreams example of issue 3 loads with its durations in seconds and defaults filled in."""
    s = load(tmp_path, ISSUE_EXAMPLE)
    hub, ghcr, quay = s.upstreams
    assert (hub.name, hub.url, hub.username, hub.password) == (
        "docker.io",
        "https://registry-1.docker.io",
        "bob",
        "hunter2",
    )
    assert (hub.ttl, hub.tagttl, hub.offline) == (604800.0, 300.0, False)
    assert (ghcr.ttl, ghcr.tagttl, ghcr.timeout, ghcr.retries, ghcr.maxsize) == (None, 300.0, 10.0, 2, 0)
    assert ghcr.tls.ca is None and ghcr.tls.insecureskipverify is False
    assert (quay.name, quay.url, quay.offline, quay.timeout, quay.retries) == (
        "quay.io",
        "https://quay.io",
        True,
        3.0,
        0,
    )
    assert quay.maxsize == 20 * 1024**3
    assert (quay.tls.ca, quay.tls.certificate, quay.tls.key) == (
        "/certs/quay-ca.pem",
        "/certs/client.crt",
        "/certs/client.key",
    )
    assert s.names == ["registry.localhost", "127.0.0.1:30500"]
    assert s.limits.manifestsize == 8 * 1024 * 1024 and s.limits.blobsize == 10**10 and s.limits.bodytimeout == 120.0
    assert s.default_upstream is None
    assert s.upstream("GHCR.io") is ghcr and s.upstream("gcr.io") is None
    assert s.is_own_name("Registry.Localhost") and not s.is_own_name("docker.io")


def test_proxy_section_folds_in_before_the_list(tmp_path: Path) -> None:
    """With both `proxy:` and `upstreams:`, the proxy's upstream comes first and is the default for no `ns`."""
    s = load(
        tmp_path,
        "version: 0.1\nstorage: {filesystem: {rootdirectory: /tmp/k3sreg-test}}\nproxy:\n  remoteurl: http://127.0.0.1:5099\n"
        "upstreams:\n  - name: ghcr.io\n    url: https://ghcr.io\n",
    )
    assert [u.name for u in s.effective_upstreams] == ["127.0.0.1:5099", "ghcr.io"]
    assert s.default_upstream is not None and s.default_upstream.url == "http://127.0.0.1:5099"
    assert s.default_upstream.ttl == 604800.0  # Distribution's proxy default: 168h
    assert s.upstream("127.0.0.1:5099") == s.default_upstream


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://registry-1.docker.io", "docker.io"),
        ("https://index.docker.io/", "docker.io"),
        ("https://ghcr.io", "ghcr.io"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://user:pw@Quay.io:8443/v2", "quay.io:8443"),
        ("http://[::1]:5000", "[::1]:5000"),
    ],
)
def test_registry_name_for_url(url: str, name: str) -> None:
    """Docker Hub's API host is the registry `docker.io`; any other URL is named by its host[:port]."""
    assert registry_name_for_url(url) == name


def test_upstream_built_from_python_takes_seconds() -> None:
    """Numbers given from Python code are seconds (only YAML numbers follow Go's nanoseconds)."""
    up = UpstreamSettings(name="docker.io", url="https://registry-1.docker.io", ttl=3600, tagttl=1.5)
    assert (up.ttl, up.tagttl) == (3600.0, 1.5)


def test_upstream_problems_all_at_once(tmp_path: Path) -> None:
    """Bad names, URLs, credentials, duplicates and misspelt keys of upstreams are listed together."""
    found = problems(
        tmp_path,
        """\
version: 0.1
storage: inmemory
upstreams:
  - name: https://docker.io
    url: registry-1.docker.io
  - name: ghcr.io
    url: ftp://ghcr.io
    usrname: bob
  - name: quay.io
    url: https://quay.io
    username: bob
    tls:
      certificate: /c.pem
  - url: https://gcr.io
    tagttl: 5
    timeout: 0s
""",
    )
    assert found == [
        "upstreams[0].name: expected a registry host such as 'docker.io' or '127.0.0.1:5000' (no scheme, no path), "
        "got 'https://docker.io'",
        "upstreams[0].url: expected an http:// or https:// URL such as 'https://registry-1.docker.io', "
        "got 'registry-1.docker.io'",
        "upstreams[1].url: expected an http:// or https:// URL such as 'https://registry-1.docker.io', "
        "got 'ftp://ghcr.io'",
        "upstreams[1].usrname: unknown key; did you mean 'username'?",
        "upstreams[2].tls: a client 'certificate' and its 'key' go together; add 'key'",
        "upstreams[3].name: required key is missing",
        "upstreams[3].tagttl: a bare number is read as nanoseconds, as Go does, so 5 means 5ns; "
        "write the unit, e.g. '5s'",
        "upstreams[3].timeout: expected a duration above zero such as '10s'",
    ]


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            "upstreams:\n  - {name: docker.io, url: 'https://a'}\n  - {name: Docker.io, url: 'https://b'}\n",
            "upstreams: the upstream name 'docker.io' appears twice; names must be unique",
        ),
        (
            "upstreams:\n  - {name: quay.io, url: 'https://quay.io', username: bob}\n",
            "upstreams[0]: 'username' and 'password' go together; add 'password'",
        ),
        (
            "names: [docker.io]\nupstreams:\n  - {name: docker.io, url: 'https://registry-1.docker.io'}\n",
            "names: 'docker.io' is both this registry's own name and an upstream; remove one",
        ),
        (
            "proxy:\n  remoteurl: https://registry-1.docker.io\n"
            "upstreams:\n  - {name: docker.io, url: 'https://mirror.gcr.io'}\n",
            "proxy: the proxy section already makes the upstream 'docker.io'; "
            "remove it from upstreams or remove the proxy section",
        ),
        (
            "names: ['http://registry.localhost']\n",
            "names[0]: expected a registry host such as 'docker.io' or '127.0.0.1:5000' (no scheme, no path), "
            "got 'http://registry.localhost'",
        ),
        ("upstreams:\n  name: docker.io\n", "upstreams: expected a list, got a mapping"),
        ("limits:\n  bodytimeout: 0s\n", "limits.bodytimeout: expected a duration above zero such as '60s'"),
    ],
)
def test_cross_checks(tmp_path: Path, tail: str, expected: str) -> None:
    """Unique upstream names, credential pairs, own names vs upstreams, proxy vs list: one line each."""
    base = "version: 0.1\nstorage: {filesystem: {rootdirectory: /tmp/k3sreg-test}}\n"
    assert problems(tmp_path, base + tail) == [expected]


def test_single_name_as_a_string(tmp_path: Path) -> None:
    """`names: registry.localhost` is a one-item list."""
    assert load(tmp_path, "version: 0.1\nstorage: inmemory\nnames: Registry.Localhost\n").names == [
        "registry.localhost"
    ]


def test_http_host_counts_as_an_own_name(tmp_path: Path) -> None:
    """The host of http.host is one of this registry's own names, next to `names`."""
    s = load(
        tmp_path,
        "version: 0.1\nstorage: inmemory\nnames: [registry.localhost]\nhttp:\n  host: https://Reg.Example.com:8443\n",
    )
    assert s.own_names == ["registry.localhost", "reg.example.com:8443"]
    assert s.is_own_name("reg.example.com:8443") and not s.is_own_name("reg.example.com")


@pytest.mark.parametrize("cache", [
    "upstreams:\n  - name: docker.io\n    url: http://127.0.0.1:5999\n",
    "proxy:\n  remoteurl: http://127.0.0.1:5999\n",
])
def test_inmemory_storage_with_a_cache_is_refused_at_load(tmp_path: Path, cache: str) -> None:
    """storage.inmemory with upstreams (or proxy:) is a config problem at load, not a 500 on the first pull."""
    found = problems(tmp_path, "version: 0.1\nstorage:\n  inmemory:\n" + cache)
    assert any("storage.inmemory cannot hold a pull-through cache" in p for p in found), found
