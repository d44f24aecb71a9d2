"""Registries named on the command line: settings from a URL and flags, and messages that say which side."""

from __future__ import annotations

import pytest

from k3sreg.client import RegistryClient, RetryPolicy
from k3sreg.client.settings import registry_settings
from k3sreg.errors import Unavailable, UsageError
from tests.peers.registry import free_port


def test_settings_from_a_url_take_its_host_or_docker_io() -> None:
    """The name is the URL's host[:port], Docker Hub's is docker.io (so library/ applies)."""
    assert registry_settings("http://127.0.0.1:5000").name == "127.0.0.1:5000"
    assert registry_settings("https://registry-1.docker.io").name == "docker.io"
    hub = RegistryClient(registry_settings("https://registry-1.docker.io"))
    assert str(hub._url("nginx", "manifests", "1")).endswith("/v2/library/nginx/manifests/1")


def test_bad_settings_are_one_usage_line() -> None:
    """A client certificate without its key is a UsageError naming the registry."""
    with pytest.raises(UsageError, match=r"registry https://r\.example: a client 'certificate' and its 'key'"):
        registry_settings("https://r.example", certificate="c.pem")


async def test_messages_name_the_role_of_the_registry() -> None:
    """A failed request to a `--to` registry says `target`, not `upstream`."""
    port = free_port()
    client = RegistryClient(registry_settings(f"http://127.0.0.1:{port}"), role="target",
                            retry=RetryPolicy(0))
    try:
        with pytest.raises(Unavailable, match=rf"^target 127.0.0.1:{port} \(http://127.0.0.1:{port}\)"):
            await client.head_manifest("a/b", "1")
    finally:
        await client.close()
