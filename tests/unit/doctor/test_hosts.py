"""The endpoints doctor probes, read from hosts.toml as containerd reads them."""

from __future__ import annotations

from k3sreg.doctor.hosts import Endpoint, endpoints, file_endpoints, pulled, table_for
from k3sreg.k3s import load_registries
from k3sreg.k3s.render import render_hosts

HOSTS = """server = "https://registry-1.docker.io/v2"
capabilities = ["pull", "resolve", "push"]

[host]

[host."https://registry.lan:30500/v2"]
  capabilities = ["pull", "resolve"]
  ca = ["/etc/ca.crt"]
  client = [["/etc/c.crt", "/etc/c.key"]]

[host."http://10.0.0.5:5000/project/registry"]
  override_path = true
  skip_verify = true
"""


def test_tables_then_server_with_their_tls() -> None:
    """[host] tables in order, then server; CA, client pair, skip_verify and the API root are read."""
    found = file_endpoints("docker.io", HOSTS)
    assert [(e.scheme, e.host, e.root) for e in found] == [
        ("https", "registry.lan:30500", "/v2"), ("http", "10.0.0.5:5000", "/project/registry"),
        ("https", "registry-1.docker.io", "/v2")]
    first = found[0]
    assert (first.ca, first.client, first.port, first.hostname) == (
        ("/etc/ca.crt",), (("/etc/c.crt", "/etc/c.key"),), 30500, "registry.lan")
    assert found[1].skip_verify and found[1].api == "http://10.0.0.5:5000/project/registry/"
    assert Endpoint("https", "[fd00::1]:443", "/v2").hostname == "fd00::1"


def test_a_file_containerd_ignores_has_no_endpoints() -> None:
    """Invalid TOML, or no [host] table: containerd ignores the file, and so do we."""
    assert file_endpoints("x", "server = ") == [] and file_endpoints("x", 'server = "https://a"\n') == []


def test_public_hosts_are_left_out_and_shared_hosts_merged() -> None:
    """The public fallback is not an endpoint to probe; a host listed by two directories is probed once."""
    other = '[host]\n[host."https://registry.lan:30500/v2"]\n  ca = ["/etc/ca.crt"]\n  client = [["/etc/c.crt", ' \
            '"/etc/c.key"]]\n'
    found = endpoints({"docker.io/hosts.toml": HOSTS, "ghcr.io/hosts.toml": other}, skip={"10.0.0.5:5000"})
    assert [(e.host, e.directories) for e in found] == [("registry.lan:30500", ("docker.io", "ghcr.io"))]
    assert table_for(HOSTS, "http", "10.0.0.5:5000") is not None and table_for(HOSTS, "https", "x") is None


def test_configs_side_effect_directories_are_not_pulled_through() -> None:
    """K3s writes a directory per configs key; when that key is a mirror's endpoint, pulls do not use it."""
    registries = load_registries('mirrors:\n  docker.io:\n    endpoint: ["http://10.0.0.5:5000"]\n'
                                 'configs:\n  "10.0.0.5:5000":\n    tls: {}\n  "other.lan:443":\n    tls: {}\n')
    files = render_hosts(registries)
    assert sorted(files) == ["10.0.0.5:5000/hosts.toml", "docker.io/hosts.toml", "other.lan:443/hosts.toml"]
    assert pulled(files, registries) == ["docker.io/hosts.toml", "other.lan:443/hosts.toml"]
    assert pulled(files, None) == sorted(files)
