"""Every row of K3s's Test_UnitGetHostConfigs table (pkg/agent/containerd/config_test.go), as hosts.toml files.

Each case restates the row's registries.yaml and node options, and the hosts.toml K3s's HostsTomlTemplate
renders from the row's expected HostConfigs, as parsed TOML per certs.d directory. The embedded-mirror TLS
files are the real agent paths instead of the test's "server-ca"/"client-cert"/"client-key" placeholders.
"""

from __future__ import annotations

import textwrap
import tomllib
from typing import Any

import pytest

from k3sreg.k3s.decode import load_registries
from k3sreg.k3s.render import RenderOptions, render_hosts

HUB = "https://registry-1.docker.io/v2"
EXAMPLE = "https://registry.example.com/v2"
EMBEDDED = "https://127.0.0.1:6443/v2"
AGENT = "/var/lib/rancher/k3s/agent"
EMBEDDED_TLS: dict[str, Any] = {
    "ca": [f"{AGENT}/server-ca.crt"],
    "client": [[f"{AGENT}/client-k3s-controller.crt", f"{AGENT}/client-k3s-controller.key"]],
}
CREDS = "configs:\n  {key}:\n    auth:\n      username: user\n      password: pass\n"


def root(url: str | None, *hosts: tuple[str, dict[str, Any]], **tls: Any) -> dict[str, Any]:
    """One parsed hosts.toml: `server` (None: no line), root TLS, the [host] stub and its endpoint tables."""
    doc: dict[str, Any] = {}
    if url is not None:
        doc.update(server=url, capabilities=["pull", "resolve", "push"])
    doc.update(tls)
    doc["host"] = dict(hosts)
    return doc


def host(url: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    """One [host."url"] table: mirrors get pull+resolve, never push."""
    return url, {"capabilities": ["pull", "resolve"], **extra}


EMBEDDED_DIR = {"127.0.0.1:6443": root(EMBEDDED, **EMBEDDED_TLS)}
EXAMPLE_CREDS_DIR = {"registry.example.com": root(EXAMPLE)}


def one_mirror(endpoint: str) -> str:
    """registries.yaml mirroring docker.io to a single endpoint."""
    return f"mirrors:\n  docker.io:\n    endpoint:\n      - {endpoint}\n"


CASES: list[tuple[str, str, dict[str, bool], dict[str, Any]]] = [
    ("no registries", "", {}, {}),
    ("registry with default endpoint", "mirrors:\n  docker.io:\n", {}, {}),
    ("registry with default endpoint explicitly listed", one_mirror("docker.io"), {}, {}),
    ("registry with default endpoint - embedded registry", "mirrors:\n  docker.io:\n", {"embedded_registry": True},
     {"docker.io": root(HUB, host(EMBEDDED, **EMBEDDED_TLS)), **EMBEDDED_DIR}),
    ("registry with default endpoint and creds", "mirrors:\n  docker.io:\n" + CREDS.format(key="docker.io"), {},
     {"docker.io": root(HUB)}),
    ("registry with default endpoint explicitly listed and creds",
     one_mirror("docker.io") + CREDS.format(key="docker.io"), {}, {"docker.io": root(HUB)}),
    ("registry with only creds", CREDS.format(key="docker.io"), {}, {"docker.io": root(HUB)}),
    ("private registry with default endpoint", "mirrors:\n  registry.example.com:\n", {}, {}),
    ("private registry with default endpoint and creds",
     "mirrors:\n  registry.example.com:\n" + CREDS.format(key="registry.example.com"), {}, EXAMPLE_CREDS_DIR),
    ("private registry with only creds", CREDS.format(key="registry.example.com"), {}, EXAMPLE_CREDS_DIR),
    ("registry with mirror endpoint - full URL with override path",
     one_mirror("https://registry.example.com/prefix/v2"), {},
     {"docker.io": root(HUB, host("https://registry.example.com/prefix/v2", override_path=True))}),
    ("registry with mirror endpoint - hostname only with override path",
     one_mirror("registry.example.com/prefix/v2"), {},
     {"docker.io": root(HUB, host("https://registry.example.com/prefix/v2", override_path=True))}),
    ("registry with mirror endpoint - hostname only with default path", one_mirror("registry.example.com/v2"), {},
     {"docker.io": root(HUB, host(EXAMPLE))}),
    ("registry with mirror endpoint - full URL", one_mirror("https://registry.example.com/v2"), {},
     {"docker.io": root(HUB, host(EXAMPLE))}),
    ("registry with mirror endpoint - URL without path", one_mirror("https://registry.example.com"), {},
     {"docker.io": root(HUB, host(EXAMPLE))}),
    ("registry with mirror endpoint - hostname only", one_mirror("registry.example.com"), {},
     {"docker.io": root(HUB, host(EXAMPLE))}),
    ("registry with mirror endpoint - hostname and port only", one_mirror("registry.example.com:443"), {},
     {"docker.io": root(HUB, host("https://registry.example.com:443/v2"))}),
    ("registry with mirror endpoint - ip address only", one_mirror("1.2.3.4"), {},
     {"docker.io": root(HUB, host("https://1.2.3.4/v2"))}),
    ("registry with mirror endpoint - ip and port only", one_mirror("1.2.3.4:443"), {},
     {"docker.io": root(HUB, host("https://1.2.3.4:443/v2"))}),
    ("registry with mirror endpoint - duplicate endpoints",
     "mirrors:\n  docker.io:\n    endpoint:\n      - registry.example.com\n      - registry.example.com\n", {},
     {"docker.io": root(HUB, host(EXAMPLE))}),
    ("registry with mirror endpoint - duplicate endpoints in different formats",
     "mirrors:\n  docker.io:\n    endpoint:\n      - registry.example.com\n      - https://registry.example.com\n"
     "      - https://registry.example.com/v2\n", {},
     {"docker.io": root(HUB, host(EXAMPLE))}),
    ("registry with mirror endpoint - duplicate endpoints in different positions",
     "mirrors:\n  docker.io:\n    endpoint:\n      - https://registry.example.com\n"
     "      - https://registry.example.org\n      - https://registry.example.com\n", {},
     {"docker.io": root(HUB, host(EXAMPLE), host("https://registry.example.org/v2"))}),
    ("registry with mirror endpoint - localhost and port only", one_mirror("localhost:5000"), {},
     {"docker.io": root(HUB, host("http://localhost:5000/v2"))}),
    ("registry with mirror endpoint - localhost and port with scheme", one_mirror("https://localhost:5000"), {},
     {"docker.io": root(HUB, host("https://localhost:5000/v2"))}),
    ("registry with mirror endpoint - loopback ip and port only", one_mirror("127.0.0.1:5000"), {},
     {"docker.io": root(HUB, host("http://127.0.0.1:5000/v2"))}),
    ("registry with mirror endpoint - loopback ip and port with scheme", one_mirror("https://127.0.0.1:5000"), {},
     {"docker.io": root(HUB, host("https://127.0.0.1:5000/v2"))}),
    ("registry with mirror endpoint and mirror creds",
     one_mirror("https://registry.example.com/v2") + CREDS.format(key="registry.example.com"), {},
     {"docker.io": root(HUB, host(EXAMPLE)), **EXAMPLE_CREDS_DIR}),
    ("registry with mirror endpoint and mirror creds - override path with v2",
     "mirrors:\n  docker.io:\n    endpoint: [https://registry.example.com/prefix/v2]\n"
     "  registry.example.com:\n    endpoint: [https://registry.example.com/prefix/v2]\n"
     + CREDS.format(key="registry.example.com"), {},
     {"docker.io": root(HUB, host("https://registry.example.com/prefix/v2", override_path=True)),
      "registry.example.com": root(EXAMPLE, host("https://registry.example.com/prefix/v2", override_path=True))}),
    ("registry with mirror endpoint and mirror creds - override path without v2",
     "mirrors:\n  docker.io:\n    endpoint: [https://registry.example.com/project/registry]\n"
     "  registry.example.com:\n    endpoint: [https://registry.example.com/project/registry]\n"
     + CREDS.format(key="registry.example.com"), {},
     {"docker.io": root(HUB, host("https://registry.example.com/project/registry", override_path=True)),
      "registry.example.com": root(EXAMPLE, host("https://registry.example.com/project/registry",
                                                 override_path=True))}),
    ("registry with mirror endpoint and mirror creds - no default endpoint",
     one_mirror("https://registry.example.com/v2") + CREDS.format(key="registry.example.com"),
     {"no_default_endpoint": True},
     {"docker.io": root(None, host(EXAMPLE)), **EXAMPLE_CREDS_DIR}),
    ("registry with mirror endpoint and mirror creds - embedded registry",
     one_mirror("https://registry.example.com/v2") + CREDS.format(key="registry.example.com"),
     {"embedded_registry": True},
     {"docker.io": root(HUB, host(EMBEDDED, **EMBEDDED_TLS), host(EXAMPLE)), **EXAMPLE_CREDS_DIR, **EMBEDDED_DIR}),
    ("registry with mirror endpoint and mirror creds - embedded registry with rewrites",
     one_mirror("https://registry.example.com/v2") + '    rewrite:\n      "^rancher/(.*)": "docker/rancher-images/$1"\n'
     + CREDS.format(key="registry.example.com"), {"embedded_registry": True},
     {"docker.io": root(HUB, host(EMBEDDED, **EMBEDDED_TLS),
                        host(EXAMPLE, rewrite={"^rancher/(.*)": "docker/rancher-images/$1"})),
      **EXAMPLE_CREDS_DIR, **EMBEDDED_DIR}),
    ("registry with mirror endpoint and mirror creds - embedded registry and no default endpoint",
     one_mirror("https://registry.example.com/v2") + CREDS.format(key="registry.example.com"),
     {"embedded_registry": True, "no_default_endpoint": True},
     {"docker.io": root(None, host(EMBEDDED, **EMBEDDED_TLS), host(EXAMPLE)), **EXAMPLE_CREDS_DIR, **EMBEDDED_DIR}),
    ("registry with mirror endpoint - embedded registry, default endpoint explicitly listed",
     "mirrors:\n  docker.io:\n    endpoint: [registry.example.com, registry.example.org, docker.io]\n",
     {"embedded_registry": True},
     {"docker.io": root(HUB, host(EMBEDDED, **EMBEDDED_TLS), host(EXAMPLE), host("https://registry.example.org/v2")),
      **EMBEDDED_DIR}),
    ("registry with mirror endpoint - embedded registry and no default endpoint, default endpoint explicitly listed",
     "mirrors:\n  docker.io:\n    endpoint: [registry.example.com, registry.example.org, docker.io]\n",
     {"embedded_registry": True, "no_default_endpoint": True},
     {"docker.io": root(None, host(EMBEDDED, **EMBEDDED_TLS), host(EXAMPLE), host("https://registry.example.org/v2"),
                        host(HUB)),
      **EMBEDDED_DIR}),
    ("wildcard mirror endpoint - no endpoints", 'mirrors:\n  "*":\n', {}, {}),
    ("wildcard mirror endpoint - full URL", 'mirrors:\n  "*":\n    endpoint: [https://registry.example.com/v2]\n', {},
     {"_default": root("", host(EXAMPLE))}),
    ("wildcard mirror endpoint - full URL, embedded registry",
     'mirrors:\n  "*":\n    endpoint: [https://registry.example.com/v2]\n', {"embedded_registry": True},
     {"_default": root("", host(EMBEDDED, **EMBEDDED_TLS), host(EXAMPLE)), **EMBEDDED_DIR}),
    ("wildcard mirror endpoint - full URL, embedded registry, no default",
     'mirrors:\n  "*":\n    endpoint: [https://registry.example.com/v2]\n',
     {"embedded_registry": True, "no_default_endpoint": True},
     {"_default": root(None, host(EMBEDDED, **EMBEDDED_TLS), host(EXAMPLE)), **EMBEDDED_DIR}),
    ("wildcard config",
     'configs:\n  "*":\n    auth:\n      username: user\n      password: pass\n    tls:\n'
     "      insecure_skip_verify: true\n", {},
     {"_default": root(None, skip_verify=True)}),
    ("localhost registry - default https endpoint on unspecified port", 'mirrors:\n  "localhost":\n', {}, {}),
    ("localhost registry - default https endpoint on https port", 'mirrors:\n  "localhost:443":\n', {}, {}),
    ("localhost registry - default http endpoint on odd port", 'mirrors:\n  "localhost:5000":\n', {}, {}),
    ("localhost registry - default http endpoint on http port", 'mirrors:\n  "localhost:80":\n', {}, {}),
    ("localhost registry - default http endpoint on odd port, embedded registry", 'mirrors:\n  "localhost:5000":\n',
     {"embedded_registry": True}, EMBEDDED_DIR),
    ("localhost registry - https endpoint on odd port with tls verification disabled",
     "mirrors:\n  localhost:5000:\n    endpoint:\n      - https://localhost:5000\n"
     "configs:\n  localhost:5000:\n    tls:\n      insecure_skip_verify: true\n", {},
     {"localhost:5000": root("http://localhost:5000/v2", host("https://localhost:5000/v2", skip_verify=True),
                             skip_verify=True)}),
]


def rendered(yaml_text: str, options: dict[str, bool]) -> dict[str, Any]:
    """certs.d directory → parsed hosts.toml, for one registries.yaml and node options."""
    files = render_hosts(load_registries(textwrap.dedent(yaml_text)), RenderOptions(**options))
    return {path.removesuffix("/hosts.toml"): tomllib.loads(text) for path, text in files.items()}


def assert_same_files(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal as parsed TOML, and the [host."…"] tables in the same order (containerd tries them in file order)."""
    assert got == expected
    for directory, doc in expected.items():
        assert list(got[directory]["host"]) == list(doc["host"]), directory


@pytest.mark.parametrize(("yaml_text", "options", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_k3s_get_host_configs_case(yaml_text: str, options: dict[str, bool], expected: dict[str, Any]) -> None:
    """Our hosts.toml files equal, as parsed TOML, those K3s writes for the same row of its own table."""
    assert_same_files(rendered(yaml_text, options), expected)


def test_every_file_starts_with_the_cleanup_header() -> None:
    """Each file's first line is K3s's HostsTomlHeader, which cleanup matches including the newline."""
    for yaml_text, options in ((c[1], c[2]) for c in CASES):
        for text in render_hosts(load_registries(yaml_text), RenderOptions(**options)).values():
            assert text.startswith("# File generated by k3s. DO NOT EDIT.\n")


# Rules read in getHostConfigs/InjectMirror but not covered by a row of K3s's table.
DERIVED: list[tuple[str, str, dict[str, bool], dict[str, Any]]] = [
    ("registry itself last with a rewrite: the folded default keeps the file (endpointHasConfig counts rewrites)",
     "mirrors:\n  docker.io:\n    endpoint: [docker.io]\n    rewrite: {'^a/(.*)': 'b/$1'}\n", {},
     {"docker.io": root(HUB)}),
    ("configs and mirrors both '*': the mirror's fresh entry replaces the wildcard config",
     'mirrors:\n  "*":\n    endpoint: [https://registry.example.com]\n'
     'configs:\n  "*":\n    tls: {insecure_skip_verify: true}\n', {},
     {"_default": root("", host(EXAMPLE))}),
    ("no default: a config under the mirror key keeps its server line (the option only hits fresh entries)",
     "mirrors:\n  registry.example.com:\n    endpoint: [https://m.example.com]\n"
     "configs:\n  registry.example.com:\n    tls: {ca_file: /ca.pem}\n", {"no_default_endpoint": True},
     {"registry.example.com": root(EXAMPLE, host("https://m.example.com/v2"), ca=["/ca.pem"])}),
    ("no default: the registry listed last stays a [host] (nothing to fold into)",
     "mirrors:\n  registry.example.com:\n    endpoint: [https://m.example.com, registry.example.com]\n",
     {"no_default_endpoint": True},
     {"registry.example.com": root(None, host("https://m.example.com/v2"), host(EXAMPLE))}),
    ("listed earlier than last, the registry itself is a [host] before the others",
     "mirrors:\n  registry.example.com:\n    endpoint: [registry.example.com, https://m.example.com]\n", {},
     {"registry.example.com": root(EXAMPLE, host(EXAMPLE), host("https://m.example.com/v2"))}),
    ("Docker Hub endpoint config found under registry-1.docker.io first, then docker.io",
     "mirrors:\n  ghcr.io:\n    endpoint: [docker.io]\nconfigs:\n  docker.io:\n    tls: {ca_file: /a}\n"
     "  registry-1.docker.io:\n    tls: {ca_file: /b}\n", {},
     {"ghcr.io": root("https://ghcr.io/v2", host(HUB, ca=["/b"])), "docker.io": root(HUB, ca=["/a"]),
      "registry-1.docker.io": root(HUB, ca=["/b"])}),
    ("configs '*' is never a fallback for an endpoint; it only writes _default",
     'mirrors:\n  docker.io:\n    endpoint: [https://m.example.com]\nconfigs:\n  "*":\n    tls: {ca_file: /ca}\n', {},
     {"docker.io": root(HUB, host("https://m.example.com/v2")), "_default": root(None, ca=["/ca"])}),
    ("client pair written when only one of cert_file/key_file is set",
     "configs:\n  r.example.com:\n    tls: {key_file: /k}\n", {},
     {"r.example.com": root("https://r.example.com/v2", client=[["", "/k"]])}),
    ("embedded mirror: a user endpoint equal to the mirror URL is a duplicate, rewrites never go to it",
     "mirrors:\n  quay.io:\n    endpoint: [https://127.0.0.1:6443/v2, https://m.example.com]\n"
     "    rewrite: {'^a/(.*)': 'b/$1'}\n", {"embedded_registry": True},
     {"quay.io": root("https://quay.io/v2", host(EMBEDDED, **EMBEDDED_TLS),
                      host("https://m.example.com/v2", rewrite={"^a/(.*)": "b/$1"})), **EMBEDDED_DIR}),
    ("embedded mirror: a user config for its address is replaced by the cluster TLS",
     "mirrors:\n  quay.io:\nconfigs:\n  127.0.0.1:6443:\n    tls: {insecure_skip_verify: true}\n",
     {"embedded_registry": True},
     {"quay.io": root("https://quay.io/v2", host(EMBEDDED, **EMBEDDED_TLS)), **EMBEDDED_DIR}),
    ("without the embedded registry K3s's mirror address is ':', so only a ':' host goes without rewrites",
     "mirrors:\n  docker.io:\n    endpoint: ['/x', ':']\n    rewrite: {a: b}\n", {},
     {"docker.io": root(HUB, host("https://///x", override_path=True, rewrite={"a": "b"}),
                        host("https://:/v2"))}),
    ("IPv6 literals keep their brackets in the [host] key",
     'mirrors:\n  docker.io:\n    endpoint: ["[::1]:5000", "https://[fd00::1]"]\n', {},
     {"docker.io": root(HUB, host("http://[::1]:5000/v2"), host("https://[fd00::1]/v2"))}),
]


@pytest.mark.parametrize(("yaml_text", "options", "expected"), [c[1:] for c in DERIVED],
                         ids=[c[0] for c in DERIVED])
def test_rules_read_in_k3s_code(yaml_text: str, options: dict[str, bool], expected: dict[str, Any]) -> None:
    """Cases derived from K3s's getHostConfigs/InjectMirror code render as that code would."""
    assert_same_files(rendered(yaml_text, options), expected)
