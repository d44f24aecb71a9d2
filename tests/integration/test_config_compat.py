"""The same config.yml runs docker-registry 2.8.2 and k3sreg: Distribution's keys and k3sreg's extensions."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3sreg.config import load_settings
from tests.peers.api import request
from tests.peers.registry import IMPLS, make_registry

# Issue 2's users'-guide config (storage and addr are set by the launcher), Debian's health check, and
# k3sreg's own keys, which registry:2 ignores.
SHARED = {
    "log": {"level": "info", "fields": {"service": "registry"}},
    "storage": {
        "cache": {"blobdescriptor": "inmemory"},
        "maintenance": {"uploadpurging": {"enabled": True, "age": "168h", "interval": "24h", "dryrun": False}},
    },
    "http": {"headers": {"X-Content-Type-Options": ["nosniff"]}, "secret": "s3cr3t", "relativeurls": True},
    "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    "names": ["registry.localhost"],
    "limits": {"manifestsize": "4MiB", "bodytimeout": "60s"},
    "upstreams": [{"name": "ghcr.io", "url": "https://ghcr.io", "offline": True}],
}


@pytest.mark.parametrize("impl", IMPLS)
def test_one_config_serves_both(impl: str, tmp_path: Path) -> None:
    """Each implementation starts from the same file and applies http.headers; k3sreg reads every key."""
    with make_registry(impl, tmp_path, config=SHARED) as reg:
        settings = load_settings(reg.config_path, {})
        assert settings.http.bind() == ("127.0.0.1", reg.port)
        assert settings.upstream("ghcr.io") is not None and settings.is_own_name("registry.localhost")
        answer = request("GET", f"{reg.url}/v2/")
        assert answer.status == 200
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.parametrize("impl", IMPLS)
def test_debian_stock_config_starts_and_enforces_htpasswd(impl: str, tmp_path: Path) -> None:
    """Debian's own /etc/docker/registry/config.yml (auth.htpasswd naming a directory) starts both
    implementations, and nothing gets in: without credentials the Basic challenge, with any a refusal."""
    import base64

    import yaml

    stock = yaml.safe_load(Path("/etc/docker/registry/config.yml").read_text())
    assert stock["auth"]["htpasswd"]["path"] == "/etc/docker/registry"
    del stock["storage"]["filesystem"], stock["http"]["addr"]  # the launcher's own port and directory
    with make_registry(impl, tmp_path, config=stock) as reg:
        bare = request("GET", f"{reg.url}/v2/")
        assert bare.status == 401 and bare.headers["www-authenticate"] == 'Basic realm="basic-realm"'
        creds = "Basic " + base64.b64encode(b"admin:admin").decode()
        assert request("GET", f"{reg.url}/v2/", headers={"Authorization": creds}).status in (400, 401)
    if impl == "k3sreg":
        assert "nobody can log in" in reg.log_text()
