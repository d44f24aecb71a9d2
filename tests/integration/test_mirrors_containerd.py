"""`k3sreg mirrors render` and `explain` against a real containerd 1.6 and two docker-registry 2.8.2 mirrors.

Everything runs inside a fresh network namespace that has only loopback: containerd, ctr (which does the
fetching), and both registries. Rendered files never name a public `server` (the default endpoint is
disabled, or the registry itself is a local address), and even a mistake could not leave the namespace.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.containerd import Containerd, CtrError
from tests.peers.images import build_layout
from tests.peers.netns import NetNs, network_namespace
from tests.peers.registry import K3SREG_BIN, DockerRegistry, free_port
from tests.peers.skopeo import Skopeo

pytestmark = pytest.mark.peers
K3SREG = [str(K3SREG_BIN)]


@dataclass
class Peers:
    ns: NetNs
    a: DockerRegistry
    b: DockerRegistry
    containerd: Containerd
    skopeo: Skopeo
    work: Path


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """One namespace, two registries and one containerd for the whole module."""
    work = tmp_path_factory.mktemp("mirrors")
    with network_namespace() as ns, \
            DockerRegistry(work / "a", netns=ns) as a, \
            DockerRegistry(work / "b", netns=ns) as b, \
            Containerd(work / "containerd", netns=ns) as containerd:
        yield Peers(ns, a, b, containerd, Skopeo(netns=ns), work)


def k3sreg(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the k3sreg CLI; fail the test with its stderr if it exits non-zero."""
    proc = subprocess.run([*K3SREG, *args], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def seed(peers: Peers, seed_no: int, targets: list[tuple[DockerRegistry, str]]) -> None:
    """Build a layout unique to `seed_no` (new digests, so containerd's cache never answers) and push it."""
    layout = build_layout(peers.work / f"layout-{seed_no}", seed=seed_no)
    for registry, repo in targets:
        peers.skopeo.copy(layout.oci_ref("1"), f"docker://{registry.host}/{repo}:1")


def render(peers: Peers, name: str, yaml_text: str, *flags: str) -> Path:
    """Write registries.yaml, render it with the CLI, and return the certs.d directory."""
    src = peers.work / f"{name}.yaml"
    src.write_text(yaml_text)
    out = peers.work / f"{name}-certs.d"
    k3sreg("mirrors", "validate", str(src), *flags)
    k3sreg("mirrors", "render", str(src), "--out", str(out), *flags)
    return out


def explain(hosts_dir: Path, image: str) -> dict[str, list[dict[str, Any]]]:
    """`mirrors explain --json` for upstream containerd (the peer here is not the K3s build)."""
    out = k3sreg("mirrors", "explain", image, "--hosts-dir", str(hosts_dir), "--runtime", "containerd", "--json")
    plan: dict[str, list[dict[str, Any]]] = json.loads(out.stdout)
    return plan


def request_line(hop_url: str) -> tuple[str, str, str]:
    """`HEAD http://127.0.0.1:5000/v2/x/manifests/1?ns=docker.io` → (method, host, path with query)."""
    method, url = hop_url.split(" ", 1)
    rest = url.split("://", 1)[1]
    host, _, path = rest.partition("/")
    return method, host, "/" + path


def test_hosts_are_asked_in_explained_order_with_ns(peers: Peers) -> None:
    """containerd asks the endpoints in the order explain prints, sending ?ns=<registry> to each mirror."""
    seed(peers, 101, [(peers.b, "team/app")])  # only the second endpoint has it
    hosts = render(peers, "order", f"""
mirrors:
  "quay.io":
    endpoint:
      - "http://{peers.a.host}"
      - "http://{peers.b.host}"
""", "--disable-default-endpoint")
    plan = explain(hosts, "quay.io/team/app:1")
    expected = [request_line(h["url"]) for h in plan["resolve"]]
    assert [host for _, host, _ in expected[:2]] == [peers.a.host, peers.b.host]
    assert expected[0][2] == "/v2/team/app/manifests/1?ns=quay.io"
    peers.containerd.pull("quay.io/team/app:1", hosts)
    # A was asked first (404), then B answered: had B come first, A would never have been asked.
    peers.a.wait_request(lambda m, p: (m, p) == (expected[0][0], expected[0][2]))
    peers.b.wait_request(lambda m, p: (m, p) == (expected[1][0], expected[1][2]))
    blob_requests = [p for m, p in peers.b.requests() if m == "GET" and "/blobs/" in p]
    assert blob_requests and all(p.startswith("/v2/team/app/blobs/sha256:") and p.endswith("?ns=quay.io")
                                 for p in blob_requests)


def test_first_endpoint_down_falls_back_to_second(peers: Peers) -> None:
    """With the first endpoint refusing connections, every request goes on to the second endpoint."""
    seed(peers, 102, [(peers.a, "library/demo"), (peers.b, "library/demo")])
    closed = free_port()
    hosts = render(peers, "fallback", f"""
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:{closed}"
      - "http://{peers.b.host}"
""", "--disable-default-endpoint")
    plan = explain(hosts, "demo:1")
    assert [request_line(h["url"])[1] for h in plan["resolve"]][:2] == [f"127.0.0.1:{closed}", peers.b.host]
    before_a = len(peers.a.requests())
    peers.containerd.pull("docker.io/library/demo:1", hosts)
    peers.b.wait_request(lambda m, p: (m, p) == ("HEAD", "/v2/library/demo/manifests/1?ns=docker.io"))
    assert any("/blobs/" in p and p.endswith("?ns=docker.io") for _, p in peers.b.requests())
    assert len(peers.a.requests()) == before_a  # A holds the image too, but is not an endpoint here
    assert "docker.io/library/demo:1" in peers.containerd.images()


def test_registry_itself_is_the_last_hop_without_ns(peers: Peers) -> None:
    """A local registry name keeps its `server` line: tried after the mirror, and asked without ?ns=."""
    seed(peers, 103, [(peers.b, "tools/kit")])
    hosts = render(peers, "server", f"""
mirrors:
  "{peers.b.host}":
    endpoint:
      - "http://{peers.a.host}"
""")
    text = (hosts / peers.b.host / "hosts.toml").read_text()
    assert f'server = "http://{peers.b.host}/v2"' in text
    plan = explain(hosts, f"{peers.b.host}/tools/kit:1")
    lines = [request_line(h["url"]) for h in plan["resolve"]]
    ns = peers.b.host.replace(":", "%3A")
    assert lines == [("HEAD", peers.a.host, f"/v2/tools/kit/manifests/1?ns={ns}"),
                     ("HEAD", peers.b.host, "/v2/tools/kit/manifests/1")]
    assert not plan["warnings"]
    peers.containerd.pull(f"{peers.b.host}/tools/kit:1", hosts)
    peers.a.wait_request(lambda m, p: (m, p) == ("HEAD", lines[0][2]))
    peers.b.wait_request(lambda m, p: (m, p) == ("HEAD", lines[1][2]))


def test_all_endpoints_down_fails_locally(peers: Peers) -> None:
    """When neither the mirror nor the registry itself answers, the pull fails at once, all on loopback."""
    registry = f"127.0.0.1:{free_port()}"
    hosts = render(peers, "down", f"""
mirrors:
  "{registry}":
    endpoint:
      - "http://127.0.0.1:{free_port()}"
""")
    plan = explain(hosts, f"{registry}/library/nothing:1")
    assert [h["public"] for h in plan["resolve"]] == [False, False]
    with pytest.raises(CtrError, match="connection refused"):
        peers.containerd.pull(f"{registry}/library/nothing:1", hosts)


def test_wildcard_mirror_serves_unlisted_registries(peers: Peers) -> None:
    """`"*"` renders _default/hosts.toml, which containerd uses for a registry without its own directory."""
    seed(peers, 104, [(peers.a, "team/wild")])
    hosts = render(peers, "wildcard", f"""
mirrors:
  "*":
    endpoint:
      - "http://{peers.a.host}"
""", "--disable-default-endpoint")
    assert sorted(p.name for p in hosts.iterdir()) == ["_default"]
    plan = explain(hosts, "ghcr.io/team/wild:1")
    assert request_line(plan["resolve"][0]["url"]) == ("HEAD", peers.a.host, "/v2/team/wild/manifests/1?ns=ghcr.io")
    peers.containerd.pull("ghcr.io/team/wild:1", hosts)
    peers.a.wait_request(lambda m, p: (m, p) == ("HEAD", "/v2/team/wild/manifests/1?ns=ghcr.io"))


def test_init_output_pulls_through_the_mirror(peers: Peers) -> None:
    """A file written by `mirrors init` validates, renders and makes containerd pull through the mirror."""
    seed(peers, 105, [(peers.b, "library/frominit")])
    src = peers.work / "init.yaml"
    k3sreg("mirrors", "init", "--endpoint", f"http://{peers.b.host}", "--mirror", "docker.io", "--mirror", "quay.io",
           "--insecure-skip-verify", "-o", str(src))
    hosts = render(peers, "init", src.read_text(), "--disable-default-endpoint")
    assert sorted(p.name for p in hosts.iterdir()) == ["docker.io", "quay.io"]
    peers.containerd.pull("docker.io/library/frominit:1", hosts)
    peers.b.wait_request(lambda m, p: (m, p) == ("HEAD", "/v2/library/frominit/manifests/1?ns=docker.io"))
