"""`k3sreg doctor` against real nodes: sshd in network namespaces with a K3s stand-in (registries.yaml, the
hosts.toml `mirrors render` makes, containerd's config.toml, a fake `k3s` binary), and real registries on the
nodes' bridge: k3sreg (TLS, pull-through to a docker-registry upstream), docker-registry with an expired
certificate, with one lacking the IP, with Basic auth, with the token flow.

A healthy cluster passes everything; then each case breaks one thing and doctor must fail exactly that check,
with the fix.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from k3sreg.auth import certs
from k3sreg.auth.users import set_user
from k3sreg.cli.main import app
from tests.peers import k3s_standin
from tests.peers.images import TestLayout
from tests.peers.netns_nodes import NodeCluster, netns_nodes  # noqa: F401  (session fixture)
from tests.peers.registry import K3SREG_BIN, DockerRegistry, K3sregServer, free_port
from tests.peers.token_issuer import TokenIssuer

pytestmark = pytest.mark.peers
CA_ON_NODE = "/etc/rancher/k3s/k3sreg-ca.crt"
IMAGE = "docker.io/library/busybox:latest"
HEALTHY_CONFIG = {"disable-default-registry-endpoint": True}


@dataclass
class Peers:
    """The registries every case uses, all listening on the nodes' bridge."""

    bridge: str
    ca: Path
    other_ca: Path
    upstream: DockerRegistry  # plain HTTP, holds library/busybox:latest
    mirror: K3sregServer  # TLS for registry.lan and the bridge IP, pull-through to `upstream` for docker.io
    expired: DockerRegistry
    no_ip: DockerRegistry  # TLS for registry.lan only
    basic: DockerRegistry  # htpasswd: robot / s3cret
    token: DockerRegistry  # token auth through `issuer` (robot / s3cret)
    issuer: TokenIssuer
    down: str  # host:port on the bridge where a registry ran and stopped


def _tls(work: Path, ca: certs.Issued, hosts: list[str], days: int = certs.LEAF_DAYS) -> tuple[Path, Path]:
    issued = certs.issue_server(ca, hosts, days=days)
    work.mkdir(parents=True, exist_ok=True)
    certs.write_pair(issued, work / "cert.pem", work / "key.pem", force=True)
    return work / "cert.pem", work / "key.pem"


@pytest.fixture(scope="module")
def peers(netns_nodes: NodeCluster, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
          oci_layout: TestLayout) -> Iterator[Peers]:
    """Start every registry once for the module."""
    work = tmp_path_factory.mktemp("doctor")
    bridge = netns_nodes.host_address
    ca, other = certs.make_ca(), certs.make_ca()
    (work / "ca.crt").write_bytes(certs.cert_pem(ca.cert))
    (work / "other-ca.crt").write_bytes(certs.cert_pem(other.cert))
    htpasswd = work / "htpasswd"
    set_user(htpasswd, "robot", "s3cret", cost=4)
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(DockerRegistry(work / "upstream", bind=bridge))
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{oci_layout.root}:1",
                        f"docker://{upstream.host}/library/busybox:latest"], check=True, capture_output=True)
        mirror = stack.enter_context(K3sregServer(
            work / "mirror", bind=bridge, tls=_tls(work / "mirror-tls", ca, [bridge, "registry.lan"]),
            config={"upstreams": [{"name": "docker.io", "url": upstream.url}]}))
        expired = stack.enter_context(DockerRegistry(
            work / "expired", bind=bridge, tls=_tls(work / "expired-tls", ca, [bridge, "registry.lan"], days=0)))
        no_ip = stack.enter_context(DockerRegistry(
            work / "no-ip", bind=bridge, tls=_tls(work / "no-ip-tls", ca, ["registry.lan"])))
        basic = stack.enter_context(DockerRegistry(
            work / "basic", bind=bridge, config={"auth": {"htpasswd": {"realm": "r", "path": str(htpasswd)}}}))
        issuer = stack.enter_context(TokenIssuer(work / "issuer", users={"robot": "s3cret"}, host=bridge))
        token = stack.enter_context(DockerRegistry(work / "token", bind=bridge,
                                                   config={"auth": issuer.registry_auth()}))
        gone = DockerRegistry(work / "down", bind=bridge).start()
        down = gone.host
        gone.stop()
        yield Peers(bridge, work / "ca.crt", work / "other-ca.crt", upstream, mirror, expired, no_ip, basic, token,
                    issuer, down)


@pytest.fixture
def cluster(netns_nodes: NodeCluster) -> Iterator[NodeCluster]:  # noqa: F811
    """The session's nodes, reset before and after each case."""
    for node in netns_nodes.nodes:
        k3s_standin.reset(node)
    yield netns_nodes
    for node in netns_nodes.nodes:
        k3s_standin.reset(node)


def registries(endpoint: str, ca: bool = True, auth: tuple[str, str] | None = None, key: str | None = None,
               extra: str = "") -> str:
    """A registries.yaml mirroring docker.io to `endpoint`, with the CA file and credentials for its host."""
    host = key or endpoint.split("://", 1)[1]
    text = f'mirrors:\n  docker.io:\n    endpoint:\n      - "{endpoint}"\n{extra}'
    settings = ""
    if ca:
        settings += f"    tls:\n      ca_file: {CA_ON_NODE}\n"
    if auth:
        settings += f"    auth:\n      username: {auth[0]}\n      password: {auth[1]}\n"
    return text + (f'configs:\n  "{host}":\n{settings}' if settings else "")


def install(cluster: NodeCluster, peers: Peers, text: str | None, config: dict[str, Any] | None = None,
            ca: Path | None = None, names: dict[str, str] | None = None, **kwargs: Any) -> None:
    """The stand-in on every node: `text` as registries.yaml, started with `config`."""
    for node in cluster.nodes:
        k3s_standin.stand_in(node, text, config=HEALTHY_CONFIG if config is None else config,
                             hosts={"registry.lan": peers.bridge} if names is None else names,
                             files={CA_ON_NODE: (ca or peers.ca).read_bytes()}, **kwargs)


def doctor(cluster: NodeCluster, *args: str) -> tuple[int, dict[str, Any]]:
    """`k3sreg doctor --inventory ... --json ARGS` in process: exit code and document."""
    result = CliRunner().invoke(app, ["doctor", "-i", str(cluster.inventory()), "--known-hosts",
                                      str(cluster.known_hosts), "--json", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


def bad(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(node, check, status) of every finding that is not a pass."""
    return sorted((f["node"], f["check"], f["status"]) for f in doc["findings"] if f["status"] != "pass")


def show(doc: dict[str, Any]) -> str:
    """The findings that are not a pass, for assertion messages."""
    return "\n".join(f"{f['node']} {f['check']} {f['status']} {f['subject']}: {f['seen']} | {f['fix']}"
                     for f in doc["findings"] if f["status"] != "pass")


def finding(doc: dict[str, Any], node: str, check: str) -> dict[str, Any]:
    """The one non-passing finding of `check` on `node`."""
    found = [f for f in doc["findings"] if f["node"] == node and f["check"] == check and f["status"] != "pass"]
    assert len(found) == 1, found
    return found[0]


def fails_on_every_node(code: int, doc: dict[str, Any], check: str) -> dict[str, Any]:
    """Assert that `check` failed on n1, n2 and n3 and nothing else did; n1's finding."""
    assert code == 1 and bad(doc) == [(n, check, "fail") for n in ("n1", "n2", "n3")], show(doc)
    return finding(doc, "n1", check)


def mirror_yaml(peers: Peers) -> str:
    """The healthy registries.yaml: docker.io through k3sreg at https://registry.lan:PORT, our CA."""
    return registries(f"https://registry.lan:{peers.mirror.port}")


def registry_args(peers: Peers) -> list[str]:
    """--registry for the mirror, trusted with the CA."""
    return ["--registry", f"https://{peers.bridge}:{peers.mirror.port}", "--ca-file", str(peers.ca)]


def test_healthy_cluster_passes_every_check_and_exits_0(cluster: NodeCluster, peers: Peers) -> None:
    """Three healthy nodes and a healthy registry: every check passes, exit status 0."""
    install(cluster, peers, mirror_yaml(peers))
    code, doc = doctor(cluster, "--image", IMAGE, *registry_args(peers), "--push-test")
    assert bad(doc) == [] and code == 0 and doc["ok"], show(doc)
    checks = {(f["node"], f["check"]) for f in doc["findings"]}
    for node in ("n1", "n2", "n3"):
        assert {(node, c) for c in ("ssh", "registries.file", "registries.valid", "hosts.current",
                                    "credentials.loaded", "k3s.version", "k3s.embedded", "dns", "tcp", "tls",
                                    "api", "auth", "resolve", "fallback")} <= checks
    assert {("registry", c) for c in ("registry.api", "registry.catalog", "registry.push", "registry.storage",
                                      "registry.upstreams", "registry.cache")} <= checks
    assert [n["version"] for n in doc["nodes"][:3]] == ["v1.31.4+k3s1"] * 3
    resolve = next(f for f in doc["findings"] if f["check"] == "resolve")
    assert f"registry.lan:{peers.mirror.port}/v2/library/busybox/manifests/latest?ns=docker.io" in resolve["seen"]


def test_doctor_on_the_node_itself_reads_its_files_and_network(cluster: NodeCluster, peers: Peers) -> None:
    """`k3sreg doctor` run on a node (no inventory) checks that node's files and endpoints from there."""
    install(cluster, peers, mirror_yaml(peers))
    n2 = cluster.nodes[1]
    done = n2.run(str(K3SREG_BIN), "doctor", "--json", "--image", IMAGE, check=False)
    doc = json.loads(done.stdout)
    assert done.returncode == 0 and bad(doc) == [], show(doc)
    assert {f["node"] for f in doc["findings"]} == {"n2"}
    assert any(f["check"] == "tls" and "TLS verified" in f["seen"] for f in doc["findings"])
    k3s_standin.reset(n2)
    done = n2.run(str(K3SREG_BIN), "doctor", "--json", check=False)
    assert done.returncode == 1 and ("n2", "registries.file", "fail") in bad(json.loads(done.stdout))


def test_missing_registries_yaml_is_named_on_that_node(cluster: NodeCluster, peers: Peers) -> None:
    """registries.yaml missing on n2: registries.file fails there and nothing else fails."""
    install(cluster, peers, mirror_yaml(peers))
    cluster.nodes[1].path(k3s_standin.REGISTRIES).unlink()
    code, doc = doctor(cluster)
    assert code == 1 and bad(doc) == [("n2", "registries.file", "fail")], show(doc)
    f = finding(doc, "n2", "registries.file")
    assert "no /etc/rancher/k3s/registries.yaml" in f["seen"] and "k3sreg nodes apply" in f["fix"]


def test_insecureskipverify_from_the_guide_is_named_with_its_spelling(cluster: NodeCluster, peers: Peers) -> None:
    """The guide's `insecureskipverify: true` (on an http endpoint, as the guide has it) fails registries.valid."""
    text = (f'mirrors:\n  docker.io:\n    endpoint:\n      - "http://{peers.upstream.host}"\n'
            f'configs:\n  "{peers.upstream.host}":\n    tls:\n      insecureskipverify: true\n')
    install(cluster, peers, text)
    f = fails_on_every_node(*doctor(cluster, "--image", IMAGE), "registries.valid")
    assert "insecureskipverify" in f["subject"] and "insecure_skip_verify" in f["fix"]


def test_registries_yaml_changed_after_the_last_restart(cluster: NodeCluster, peers: Peers) -> None:
    """registries.yaml rewritten on agent n3 after K3s started: hosts.current fails there, naming k3s-agent."""
    install(cluster, peers, mirror_yaml(peers))
    n3 = cluster.nodes[2]
    extra = f'  quay.io:\n    endpoint:\n      - "https://registry.lan:{peers.mirror.port}"\n'
    n3.path(k3s_standin.REGISTRIES).write_text(registries(f"https://registry.lan:{peers.mirror.port}", extra=extra))
    k3s_standin.touch(n3, k3s_standin.REGISTRIES)
    code, doc = doctor(cluster)
    assert code == 1 and bad(doc) == [("n3", "hosts.current", "fail")], show(doc)
    f = finding(doc, "n3", "hosts.current")
    assert "K3s has not been restarted since registries.yaml changed: missing quay.io" in f["seen"]
    assert f["fix"] == "restart K3s: systemctl restart k3s-agent"
    k3s_standin.start(n3, no_default=True)
    code, doc = doctor(cluster)
    assert code == 0 and bad(doc) == [], show(doc)


def test_wrong_ca_file_on_one_node(cluster: NodeCluster, peers: Peers) -> None:
    """n2 trusts another CA: tls fails on n2, saying which CA issued the certificate."""
    install(cluster, peers, mirror_yaml(peers))
    cluster.nodes[1].path(CA_ON_NODE).write_bytes(peers.other_ca.read_bytes())
    code, doc = doctor(cluster)
    assert code == 1 and bad(doc) == [("n2", "tls", "fail")], show(doc)
    f = finding(doc, "n2", "tls")
    assert "not by the CA in /etc/rancher/k3s/k3sreg-ca.crt" in f["seen"] and "another key" in f["seen"]
    assert CA_ON_NODE in f["fix"]


def test_expired_certificate(cluster: NodeCluster, peers: Peers) -> None:
    """A registry serving an expired certificate: tls fails on every node with the date and the reissue fix."""
    install(cluster, peers, registries(f"https://registry.lan:{peers.expired.port}"))
    f = fails_on_every_node(*doctor(cluster), "tls")
    assert "expired on" in f["seen"] and "k3sreg certs issue -H registry.lan" in f["fix"]


def test_certificate_without_the_node_ip(cluster: NodeCluster, peers: Peers) -> None:
    """The endpoint is the IP, the certificate names registry.lan only: tls names the missing IP."""
    install(cluster, peers, registries(f"https://{peers.no_ip.host}"))
    f = fails_on_every_node(*doctor(cluster), "tls")
    assert f"is for registry.lan, not {peers.bridge}" in f["seen"]
    assert f"k3sreg certs issue -H {peers.bridge}" in f["fix"]


def test_wrong_port_names_the_port_that_answers(cluster: NodeCluster, peers: Peers) -> None:
    """The endpoint's port has nothing; the registry (--registry) answers on another: tcp says wrong port."""
    port = free_port()
    install(cluster, peers, registries(f"https://registry.lan:{port}"))
    f = fails_on_every_node(*doctor(cluster, *registry_args(peers)), "tcp")
    assert f"a registry answers on port {peers.mirror.port} of the same host: wrong port" in f["seen"]
    assert f"write port {peers.mirror.port}" in f["fix"]


def test_https_endpoint_on_a_plain_http_registry(cluster: NodeCluster, peers: Peers) -> None:
    """https:// on a plain-HTTP registry: "server gave HTTP response to HTTPS client", fix http://."""
    install(cluster, peers, registries(f"https://{peers.upstream.host}", ca=False))
    f = fails_on_every_node(*doctor(cluster), "tls")
    assert "server gave HTTP response to HTTPS client" in f["seen"]
    assert f"write http://{peers.upstream.host}" in f["fix"]


def test_http_endpoint_on_an_https_registry(cluster: NodeCluster, peers: Peers) -> None:
    """http:// on a TLS registry: told apart from the reverse, fix https:// with a CA."""
    install(cluster, peers, registries(f"http://registry.lan:{peers.mirror.port}", ca=False))
    f = fails_on_every_node(*doctor(cluster), "tls")
    assert "speaks HTTPS, the endpoint says http://" in f["seen"]
    assert f"write https://registry.lan:{peers.mirror.port}" in f["fix"]


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_wrong_password_is_refused_and_the_right_one_accepted(cluster: NodeCluster, peers: Peers,
                                                             kind: str) -> None:
    """Basic (htpasswd) and the token flow: the node's wrong password fails auth, the right one passes (with
    the validator's warning that the credentials cross plain http://, which does not fail the run)."""
    reg = peers.basic if kind == "basic" else peers.token
    nodes = ("n1", "n2", "n3")
    clear_text = {(n, "registries.valid", "warn") for n in nodes}
    install(cluster, peers, registries(f"http://{reg.host}", ca=False, auth=("robot", "wrong")))
    code, doc = doctor(cluster, "--image", IMAGE)
    assert code == 1
    assert set(bad(doc)) == {(n, c, "fail") for n in nodes for c in ("auth", "resolve")} | clear_text, show(doc)
    f = finding(doc, "n1", "auth")
    assert "refuses the credentials" in f["seen"] and "correct the username and password" in f["fix"]
    assert "over plain http://" in finding(doc, "n1", "registries.valid")["seen"]
    install(cluster, peers, registries(f"http://{reg.host}", ca=False, auth=("robot", "s3cret")))
    code, doc = doctor(cluster)
    assert code == 0 and set(bad(doc)) == clear_text, show(doc)


def test_a_name_that_does_not_resolve(cluster: NodeCluster, peers: Peers) -> None:
    """registry.localhost without an /etc/hosts line on the nodes: dns fails with the loopback line to add;
    registry.lan missing on n2 only fails there."""
    install(cluster, peers, registries(f"https://registry.localhost:{peers.mirror.port}"))
    f = fails_on_every_node(*doctor(cluster), "dns")
    assert "registry.localhost does not resolve" in f["seen"]
    assert "add `127.0.0.1 registry.localhost` to /etc/hosts" in f["fix"]
    install(cluster, peers, mirror_yaml(peers))
    k3s_standin.reset_hosts(cluster.nodes[1])
    code, doc = doctor(cluster)
    assert code == 1 and bad(doc) == [("n2", "dns", "fail")], show(doc)


def test_registry_down(cluster: NodeCluster, peers: Peers) -> None:
    """Nothing listens where the registry was: tcp says the registry is down, and so does registry.api."""
    install(cluster, peers, registries(f"https://{peers.down}"))
    code, doc = doctor(cluster, "--registry", f"https://{peers.down}", "--ca-file", str(peers.ca))
    assert code == 1
    expected = [*[(n, "tcp", "fail") for n in ("n1", "n2", "n3")], ("registry", "registry.api", "fail")]
    assert bad(doc) == expected, show(doc)
    assert "the registry is down" in finding(doc, "n1", "tcp")["seen"]
    assert "registry down" in finding(doc, "registry", "registry.api")["seen"]


def test_an_upstream_down(cluster: NodeCluster, peers: Peers) -> None:
    """The upstream of docker.io stops: registry.upstreams fails naming it; the nodes are fine."""
    install(cluster, peers, mirror_yaml(peers))
    peers.upstream.stop()
    try:
        code, doc = doctor(cluster, *registry_args(peers))
    finally:
        peers.upstream.start()
    assert code == 1 and bad(doc) == [("registry", "registry.upstreams", "fail")], show(doc)
    f = finding(doc, "registry", "registry.upstreams")
    assert f["subject"] == "docker.io" and "cannot reach it" in f["seen"] and "connection refused" in f["seen"]


def test_a_node_unreachable_is_a_failed_row(cluster: NodeCluster, peers: Peers) -> None:
    """n3 unplugged: its ssh check fails with the reason; n1 and n2 are checked in full."""
    install(cluster, peers, mirror_yaml(peers))
    with cluster.nodes[2].unplugged():
        code, doc = doctor(cluster, "--connect-timeout", "2")
    assert code == 1 and bad(doc) == [("n3", "ssh", "fail")], show(doc)
    assert "timed out after 2s" in finding(doc, "n3", "ssh")["seen"]
    assert [n["reached"] for n in doc["nodes"]] == [True, True, False]
    assert sum(1 for f in doc["findings"] if f["node"] == "n1") > 10


def test_not_a_registry_at_the_endpoint(cluster: NodeCluster, peers: Peers, tmp_path: Path) -> None:
    """A web server that is no registry: api fails with 404."""
    server = http.server.ThreadingHTTPServer((peers.bridge, 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        install(cluster, peers, registries(f"http://{peers.bridge}:{server.server_address[1]}", ca=False))
        code, doc = doctor(cluster)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1 and bad(doc) == [(n, "api", "fail") for n in ("n1", "n2", "n3")], show(doc)
    assert "answers 404: no registry API" in finding(doc, "n1", "api")["seen"]


def test_public_fallback_unreachable_from_an_air_gapped_node(cluster: NodeCluster, peers: Peers) -> None:
    """Without --disable-default-registry-endpoint a pull falls back to Docker Hub, which the nodes cannot reach."""
    install(cluster, peers, mirror_yaml(peers), config={})
    code, doc = doctor(cluster)
    assert code == 0 and bad(doc) == [(n, "fallback", "warn") for n in ("n1", "n2", "n3")], show(doc)
    f = finding(doc, "n1", "fallback")
    assert "go to registry-1.docker.io, which the node cannot reach" in f["seen"]
    assert "disable-default-registry-endpoint: true" in f["fix"]


def test_embedded_registry_read_from_the_server_config(cluster: NodeCluster, peers: Peers) -> None:
    """embedded-registry: true in the server's config.yaml: every node reports it on, and the hosts.toml with the
    embedded mirror first is what K3s writes; an agent carrying the option itself fails."""
    text = mirror_yaml(peers)
    for node in cluster.nodes:
        config = {**HEALTHY_CONFIG, "embedded-registry": True} if node.role == "server" else HEALTHY_CONFIG
        k3s_standin.stand_in(node, text, config=config, embedded=True, hosts={"registry.lan": peers.bridge},
                             files={CA_ON_NODE: peers.ca.read_bytes()})
    code, doc = doctor(cluster)
    assert code == 0 and bad(doc) == [], show(doc)
    embedded = {f["node"]: f["seen"] for f in doc["findings"] if f["check"] == "k3s.embedded"}
    assert "on, from /etc/rancher/k3s/config.yaml" in embedded["n1"]
    assert "on, from the config of server n1" in embedded["n3"]
    n3 = cluster.nodes[2]
    n3.path(k3s_standin.CONFIG).write_text("embedded-registry: true\ndisable-default-registry-endpoint: true\n")
    code, doc = doctor(cluster)
    assert code == 1 and bad(doc) == [("n3", "k3s.embedded", "fail")], show(doc)


def test_registry_checks_refused_catalog_and_push(cluster: NodeCluster, peers: Peers) -> None:
    """An anonymous token that grants nothing: /v2/ answers, the catalog and the test push are refused; the
    k3sreg-only readings are warnings on docker-registry."""
    install(cluster, peers, mirror_yaml(peers))
    peers.issuer.anonymous = True
    try:
        code, doc = doctor(cluster, "--node", "n1", "--registry", peers.token.url, "--push-test")
    finally:
        peers.issuer.anonymous = False
    assert code == 1
    assert [b for b in bad(doc) if b[0] == "registry"] == [
        ("registry", "registry.cache", "warn"), ("registry", "registry.catalog", "fail"),
        ("registry", "registry.push", "fail"), ("registry", "registry.storage", "warn"),
        ("registry", "registry.upstreams", "warn")]


def test_piped_output_is_one_line_per_finding(cluster: NodeCluster, peers: Peers) -> None:
    """Without --json and piped: a header, one tab-separated line per finding with its fix, a summary."""
    install(cluster, peers, mirror_yaml(peers))
    cluster.nodes[1].path(CA_ON_NODE).write_bytes(peers.other_ca.read_bytes())
    result = CliRunner().invoke(app, ["doctor", "-i", str(cluster.inventory()), "--known-hosts",
                                      str(cluster.known_hosts)])
    lines = result.stdout.splitlines()
    assert result.exit_code == 1
    assert lines[0] == "node\tcheck\tstatus\tsubject\tseen\tfix"
    rows = [line.split("\t") for line in lines[1:-1]]
    assert all(len(row) == 6 for row in rows)
    failing = [row for row in rows if row[2] == "fail"]
    assert [(r[0], r[1]) for r in failing] == [("n2", "tls")] and failing[0][5] != "-"
    assert lines[-1].startswith("pass ") and " fail 1 " in lines[-1]


def test_registry_certificate_not_trusted_from_here(cluster: NodeCluster, peers: Peers) -> None:
    """--registry over TLS without --ca-file: the certificate is named, not a registry down."""
    install(cluster, peers, mirror_yaml(peers))
    code, doc = doctor(cluster, "--node", "n1", "--registry", f"https://{peers.bridge}:{peers.mirror.port}")
    assert code == 1 and bad(doc) == [("registry", "registry.api", "fail")], show(doc)
    f = finding(doc, "registry", "registry.api")
    assert "certificate does not verify" in f["seen"] and "--ca-file" in f["fix"]
