"""hosts.toml rendering compared, as parsed TOML, with what K3s's getHostConfigs + template produce."""

from __future__ import annotations

import textwrap
import tomllib
from typing import Any

import pytest

from k3sreg.k3s.decode import load_registries
from k3sreg.k3s.render import RenderOptions, containerd_auth_toml, render, render_hosts

DOCKER = "https://registry-1.docker.io/v2"
MIRROR_CAPS = ["pull", "resolve"]
SERVER_CAPS = ["pull", "resolve", "push"]
EMBEDDED_TLS = {
    "ca": ["/var/lib/rancher/k3s/agent/server-ca.crt"],
    "client": [["/var/lib/rancher/k3s/agent/client-k3s-controller.crt",
                "/var/lib/rancher/k3s/agent/client-k3s-controller.key"]],
}


def hosts(yaml_text: str, **options: Any) -> dict[str, dict[str, Any]]:
    """Render and parse every file: directory name → parsed hosts.toml."""
    files = render_hosts(load_registries(textwrap.dedent(yaml_text)), RenderOptions(**options))
    return {path.removesuffix("/hosts.toml"): tomllib.loads(text) for path, text in files.items()}


def server(url: str, **extra: Any) -> dict[str, Any]:
    """The root of a hosts.toml with a `server` line."""
    return {"server": url, "capabilities": SERVER_CAPS, **extra}


def mirror(**extra: Any) -> dict[str, Any]:
    """One [host."…"] table."""
    return {"capabilities": MIRROR_CAPS, **extra}


@pytest.mark.parametrize(
    "yaml_text",
    ["", "mirrors:\n  docker.io:\n", "mirrors:\n  docker.io:\n    endpoint: [docker.io]\n",
     "mirrors:\n  registry.example.com:\n", 'mirrors:\n  "*":\n', "mirrors:\n  localhost:5000:\n"],
)
def test_entries_without_settings_write_nothing(yaml_text: str) -> None:
    """K3s drops entries whose only endpoint is the registry itself (K3s cases "default endpoint")."""
    assert hosts(yaml_text) == {}


def test_mirror_endpoint_full_url() -> None:
    """A mirror becomes a [host] entry before the Docker Hub server (K3s: "mirror endpoint - full URL")."""
    got = hosts("""
        mirrors:
          docker.io:
            endpoint: ["https://registry.example.com/v2"]
    """)
    assert got == {"docker.io": server(DOCKER, host={"https://registry.example.com/v2": mirror()})}


def test_override_path_and_creds_on_both_entries() -> None:
    """Custom paths get override_path; configs of the endpoint host also make its own file."""
    got = hosts("""
        mirrors:
          docker.io:
            endpoint: ["https://registry.example.com/project/registry"]
          registry.example.com:
            endpoint: ["https://registry.example.com/project/registry"]
        configs:
          registry.example.com:
            auth: {username: user, password: pass}
    """)
    entry = {"https://registry.example.com/project/registry": mirror(override_path=True)}
    assert got == {
        "docker.io": server(DOCKER, host=entry),
        "registry.example.com": server("https://registry.example.com/v2", host=entry),
    }


def test_duplicates_in_different_formats_are_dropped() -> None:
    """`h`, `https://h` and `https://h/v2` are one endpoint; the first position is kept."""
    got = hosts("""
        mirrors:
          docker.io:
            endpoint: [registry.example.com, "https://registry.example.org", "https://registry.example.com/v2"]
    """)
    assert list(got["docker.io"]["host"]) == ["https://registry.example.com/v2", "https://registry.example.org/v2"]


def test_no_default_endpoint_removes_server() -> None:
    """--disable-default-registry-endpoint drops `server` but keeps the [host] stub and mirrors."""
    got = hosts("""
        mirrors:
          docker.io:
            endpoint: ["https://registry.example.com/v2"]
        configs:
          registry.example.com:
            auth: {username: user, password: pass}
    """, no_default_endpoint=True)
    assert got["docker.io"] == {"host": {"https://registry.example.com/v2": mirror()}}
    assert got["registry.example.com"] == server("https://registry.example.com/v2", host={})


def test_no_default_keeps_registry_listed_last() -> None:
    """With the default disabled, the registry itself listed last stays a normal [host] (K3s case T35)."""
    got = hosts("""
        mirrors:
          docker.io:
            endpoint: [registry.example.com, registry.example.org, docker.io]
    """, no_default_endpoint=True, embedded_registry=True)
    assert list(got["docker.io"]["host"]) == [
        "https://127.0.0.1:6443/v2", "https://registry.example.com/v2", "https://registry.example.org/v2", DOCKER]
    assert "server" not in got["docker.io"]


def test_embedded_registry_prepends_the_local_mirror() -> None:
    """Spegel: https://127.0.0.1:6443/v2 first (cluster CA, no rewrites) plus its own file."""
    got = hosts("""
        mirrors:
          docker.io:
            endpoint: ["https://registry.example.com/v2"]
            rewrite:
              "^rancher/(.*)": "docker/rancher-images/$1"
          localhost:5000:
    """, embedded_registry=True)
    assert got == {
        "docker.io": server(DOCKER, host={
            "https://127.0.0.1:6443/v2": mirror(**EMBEDDED_TLS),
            "https://registry.example.com/v2": mirror(rewrite={"^rancher/(.*)": "docker/rancher-images/$1"}),
        }),
        "127.0.0.1:6443": server("https://127.0.0.1:6443/v2", host={}, **EMBEDDED_TLS),
    }


def test_embedded_registry_flavor_paths() -> None:
    """RKE2 uses its own data dir, controller cert names and supervisor port."""
    got = hosts("mirrors:\n  docker.io:\n", embedded_registry=True, program="rke2")
    assert list(got["docker.io"]["host"]) == ["https://127.0.0.1:9345/v2"]
    assert got["127.0.0.1:9345"]["ca"] == ["/var/lib/rancher/rke2/agent/server-ca.crt"]


def test_wildcard_mirror_renders_empty_server() -> None:
    """`"*"` goes to _default with `server = ""` (fall back to the image's own registry)."""
    got = hosts("""
        mirrors:
          "*":
            endpoint: ["https://registry.example.com/v2"]
    """)
    assert got == {"_default": {"server": "", "capabilities": SERVER_CAPS,
                                "host": {"https://registry.example.com/v2": mirror()}}}
    assert "server" not in hosts('mirrors:\n  "*":\n    endpoint: [h]\n', no_default_endpoint=True)["_default"]


def test_wildcard_config_alone_and_with_wildcard_mirror() -> None:
    """configs."*" alone writes _default TLS; next to mirrors."*" it is dropped (K3s quirk, CASES D12)."""
    cfg = 'configs:\n  "*":\n    auth: {username: u, password: p}\n    tls: {insecure_skip_verify: true}\n'
    assert hosts(cfg) == {"_default": {"skip_verify": True, "host": {}}}
    both = hosts(cfg + 'mirrors:\n  "*":\n    endpoint: [h]\n')
    assert both == {"_default": {"server": "", "capabilities": SERVER_CAPS, "host": {"https://h/v2": mirror()}}}


def test_localhost_mirror_with_https_endpoint_and_skip_verify() -> None:
    """The loopback registry's own default is http; its https endpoint gets the TLS settings too."""
    got = hosts("""
        mirrors:
          localhost:5000:
            endpoint: ["https://localhost:5000"]
        configs:
          localhost:5000:
            tls: {insecure_skip_verify: true}
    """)
    assert got == {"localhost:5000": server("http://localhost:5000/v2", skip_verify=True, host={
        "https://localhost:5000/v2": mirror(skip_verify=True)})}


def test_dockerhub_config_found_under_registry_1() -> None:
    """configs."registry-1.docker.io" applies to docker.io endpoints before configs."docker.io"."""
    got = hosts("""
        mirrors:
          mirror.local:
            endpoint: [docker.io, "https://m.example.com"]
        configs:
          registry-1.docker.io:
            tls: {ca_file: /a.pem}
          docker.io:
            tls: {ca_file: /b.pem}
    """)
    assert got["mirror.local"]["host"][DOCKER]["ca"] == ["/a.pem"]


def test_config_under_mirror_name_keeps_server_even_without_default() -> None:
    """A configs entry under the mirror's own key keeps `server` with the default disabled (K3s quirk)."""
    got = hosts("""
        mirrors:
          docker.io:
            endpoint: ["https://m.example.com"]
        configs:
          docker.io:
            auth: {username: u, password: p}
    """, no_default_endpoint=True)
    assert got["docker.io"]["server"] == DOCKER


def test_tls_fields_and_client_pairs() -> None:
    """ca, client pair (also with only the key) and skip_verify are written at root and per host."""
    got = hosts("""
        mirrors:
          docker.io:
            endpoint: ["https://m.example.com:8443"]
        configs:
          m.example.com:8443:
            tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, insecure_skip_verify: true}
          keyonly.example.com:
            tls: {key_file: /k.pem}
    """)
    tls = {"ca": ["/ca.pem"], "client": [["/c.pem", "/k.pem"]], "skip_verify": True}
    assert got["docker.io"]["host"]["https://m.example.com:8443/v2"] == mirror(**tls)
    assert got["m.example.com:8443"] == server("https://m.example.com:8443/v2", host={}, **tls)
    assert got["keyonly.example.com"]["client"] == [["", "/k.pem"]]


def test_empty_tls_block_keeps_a_file() -> None:
    """A tls block with only misspelled keys still counts as config: K3s writes a bare file."""
    got = hosts('configs:\n  "127.0.0.1:30500":\n    tls:\n      insecureskipverify: true\n')
    assert got == {"127.0.0.1:30500": server("http://127.0.0.1:30500/v2", host={})}


def test_invalid_endpoint_is_skipped_with_a_note() -> None:
    """An unparsable endpoint is left out and logged, the others stay."""
    result = render(load_registries("mirrors:\n  docker.io:\n    endpoint: ['http://h:port', m.example.com]\n"))
    assert "Ignoring invalid endpoint URL 0=http://h:port for docker.io" in result.notes[0]
    assert list(tomllib.loads(result.files["docker.io/hosts.toml"])["host"]) == ["https://m.example.com/v2"]


def test_exact_text_layout() -> None:
    """The text matches the newest K3s template byte for byte (header, blank line before each table)."""
    files = render_hosts(load_registries(textwrap.dedent("""
        mirrors:
          docker.io:
            endpoint: ["http://127.0.0.1:30500", "https://r.example.com/p"]
            rewrite: {"^b/(.*)": "x/$1", "^a/(.*)": "y/$1"}
        configs:
          r.example.com:
            tls: {ca_file: /ca.pem}
    """)))
    assert files["docker.io/hosts.toml"] == textwrap.dedent("""\
        # File generated by k3s. DO NOT EDIT.
        server = "https://registry-1.docker.io/v2"
        capabilities = ["pull", "resolve", "push"]

        [host]

        [host."http://127.0.0.1:30500/v2"]
          capabilities = ["pull", "resolve"]
          [host."http://127.0.0.1:30500/v2".rewrite]
            "^a/(.*)" = "y/$1"
            "^b/(.*)" = "x/$1"

        [host."https://r.example.com/p"]
          capabilities = ["pull", "resolve"]
          override_path = true
          ca = ["/ca.pem"]
          [host."https://r.example.com/p".rewrite]
            "^a/(.*)" = "y/$1"
            "^b/(.*)" = "x/$1"
        """)
    rke2 = render_hosts(load_registries("configs:\n  r.example.com:\n    tls: {}\n"), RenderOptions(program="rke2"))
    assert rke2["r.example.com/hosts.toml"].startswith("# File generated by rke2. DO NOT EDIT.\n")


def test_values_needing_escapes_stay_valid_toml() -> None:
    """Backslashes and quotes (which break K3s's own file) are escaped, so ours parses to the same value."""
    got = hosts(r"""
        mirrors:
          docker.io:
            endpoint: ["https://m.example.com"]
            rewrite: {'^a\.b/(.*)': 'c/$1'}
        configs:
          m.example.com:
            tls: {ca_file: 'C:\ca "x".pem'}
    """)
    host = got["docker.io"]["host"]["https://m.example.com/v2"]
    assert host["rewrite"] == {r"^a\.b/(.*)": "c/$1"}
    assert host["ca"] == ['C:\\ca "x".pem']


def test_keys_that_leave_certs_d_are_refused() -> None:
    """A key like `..` would make K3s write outside certs.d; we leave it out and say so."""
    result = render(load_registries('configs:\n  "..":\n    tls: {ca_file: /x}\n  "a/../../b":\n    tls: {}\n'))
    assert result.files == {}
    assert len(result.notes) == 2


def test_containerd_auth_snippet_v2_and_v3() -> None:
    """Credentials go to config.toml under the configs key verbatim, identity_token as identitytoken."""
    reg = load_registries('configs:\n  "127.0.0.1:30500":\n'
                          '    auth: {username: u, password: "p\\"w", identity_token: t}\n'
                          "  other:\n    tls: {}\n")
    v2 = tomllib.loads(containerd_auth_toml(reg, 2))
    assert v2["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]["127.0.0.1:30500"]["auth"] == {
        "username": "u", "password": 'p"w', "identitytoken": "t"}
    v3 = tomllib.loads(containerd_auth_toml(reg, 3, stargz=True))
    assert set(v3["plugins"]) == {"io.containerd.cri.v1.images", "io.containerd.snapshotter.v1.stargz"}
    assert containerd_auth_toml(load_registries(""), 2) == ""


CREDS = "configs:\n  {key}:\n    auth: {{username: user, password: pass}}\n"
EMBEDDED_HOST = {"127.0.0.1:6443": server("https://127.0.0.1:6443/v2", host={}, **EMBEDDED_TLS)}


@pytest.mark.parametrize(
    ("yaml_text", "options", "expected"),
    [
        pytest.param("mirrors:\n  docker.io:\n" + CREDS.format(key="docker.io"), {},
                     {"docker.io": server(DOCKER, host={})}, id="default endpoint and creds"),
        pytest.param("mirrors:\n  docker.io:\n    endpoint: [docker.io]\n" + CREDS.format(key="docker.io"), {},
                     {"docker.io": server(DOCKER, host={})}, id="default endpoint listed and creds"),
        pytest.param(CREDS.format(key="docker.io"), {}, {"docker.io": server(DOCKER, host={})}, id="only creds"),
        pytest.param("mirrors:\n  registry.example.com:\n" + CREDS.format(key="registry.example.com"), {},
                     {"registry.example.com": server("https://registry.example.com/v2", host={})},
                     id="private registry with default endpoint and creds"),
        pytest.param("mirrors:\n  docker.io:\n", {"embedded_registry": True},
                     {"docker.io": server(DOCKER, host={"https://127.0.0.1:6443/v2": mirror(**EMBEDDED_TLS)}),
                      **EMBEDDED_HOST}, id="default endpoint - embedded registry"),
        pytest.param("mirrors:\n  docker.io:\n    endpoint: [https://registry.example.com,"
                     " https://registry.example.org, https://registry.example.com]\n", {},
                     {"docker.io": server(DOCKER, host={"https://registry.example.com/v2": mirror(),
                                                        "https://registry.example.org/v2": mirror()})},
                     id="duplicate endpoints in different positions"),
        pytest.param("mirrors:\n  docker.io:\n    endpoint: [https://registry.example.com/v2]\n"
                     + CREDS.format(key="registry.example.com"), {},
                     {"docker.io": server(DOCKER, host={"https://registry.example.com/v2": mirror()}),
                      "registry.example.com": server("https://registry.example.com/v2", host={})},
                     id="mirror endpoint and mirror creds"),
        pytest.param("mirrors:\n  docker.io:\n    endpoint: [registry.example.com, registry.example.org, docker.io]\n",
                     {"embedded_registry": True},
                     {"docker.io": server(DOCKER, host={"https://127.0.0.1:6443/v2": mirror(**EMBEDDED_TLS),
                                                        "https://registry.example.com/v2": mirror(),
                                                        "https://registry.example.org/v2": mirror()}),
                      **EMBEDDED_HOST}, id="embedded registry, default endpoint explicitly listed"),
        pytest.param('mirrors:\n  "*":\n    endpoint: [https://registry.example.com/v2]\n',
                     {"embedded_registry": True},
                     {"_default": {"server": "", "capabilities": SERVER_CAPS, "host": {
                         "https://127.0.0.1:6443/v2": mirror(**EMBEDDED_TLS),
                         "https://registry.example.com/v2": mirror()}}, **EMBEDDED_HOST},
                     id="wildcard full URL, embedded registry"),
        pytest.param('mirrors:\n  "*":\n    endpoint: [https://registry.example.com/v2]\n',
                     {"embedded_registry": True, "no_default_endpoint": True},
                     {"_default": {"host": {"https://127.0.0.1:6443/v2": mirror(**EMBEDDED_TLS),
                                            "https://registry.example.com/v2": mirror()}}, **EMBEDDED_HOST},
                     id="wildcard full URL, embedded registry, no default"),
        pytest.param('mirrors:\n  "localhost:5000":\n', {"embedded_registry": True}, EMBEDDED_HOST,
                     id="localhost registry on odd port, embedded registry"),
    ],
)
def test_k3s_unit_table(yaml_text: str, options: dict[str, bool], expected: dict[str, Any]) -> None:
    """The remaining rows of K3s's Test_UnitGetHostConfigs, rendered and compared as parsed TOML."""
    assert hosts(yaml_text, **options) == expected
