"""Rendered TLS settings against a real containerd 1.6 and a docker-registry 2.8.2 serving HTTPS.

The registry listens on 10.255.0.1 (an address on the loopback device of a fresh network namespace, so it is
not a loopback address and K3s's defaults pick https for it). The checks: `ca_file` reaches both the mirror
`[host]` entry and the root of a configs-only file, `insecure_skip_verify` works, and a configs-only file is
honoured only because of the `[host]` stub: the same file without it is ignored by containerd.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.containerd import Containerd, CtrError
from tests.peers.images import build_layout
from tests.peers.netns import NetNs, network_namespace
from tests.peers.registry import K3SREG_BIN, DockerRegistry, write_self_signed
from tests.peers.skopeo import Skopeo

pytestmark = pytest.mark.peers
ADDRESS = "10.255.0.1"


@dataclass
class TLSPeers:
    ns: NetNs
    registry: DockerRegistry
    cert: Path
    containerd: Containerd
    work: Path

    @property
    def host(self) -> str:
        """`10.255.0.1:PORT`, the registry as image references name it."""
        return f"{ADDRESS}:{self.registry.port}"


@pytest.fixture(scope="module")
def tls_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSPeers]:
    """An HTTPS registry on a non-loopback address, seeded with one image, and a containerd, in one namespace."""
    work = tmp_path_factory.mktemp("mirrors-tls")
    cert, key = write_self_signed(work, hosts=(ADDRESS, "127.0.0.1"))
    with network_namespace() as ns:
        subprocess.run(["ip", "-n", ns.name, "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
        registry = DockerRegistry(work / "registry", netns=ns, tls=(cert, key))
        registry.config["http"]["addr"] = f"0.0.0.0:{registry.port}"
        with registry, Containerd(work / "containerd", netns=ns) as containerd:
            layout = build_layout(work / "layout", seed=201)
            host = f"{ADDRESS}:{registry.port}"
            for repo in ("library/secure", "team/direct", "team/insecure", "team/nostub"):
                Skopeo(netns=ns).copy(layout.oci_ref("1"), f"docker://{host}/{repo}:1")
            yield TLSPeers(ns, registry, cert, containerd, work)


def render(peers: TLSPeers, name: str, yaml_text: str) -> Path:
    """Validate (no error allowed) and render with the CLI; return the certs.d directory."""
    src = peers.work / f"{name}.yaml"
    src.write_text(yaml_text)
    out = peers.work / f"{name}-certs.d"
    for args in (["validate", str(src)], ["render", str(src), "--out", str(out)]):
        proc = subprocess.run([str(K3SREG_BIN), "mirrors", *args], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_ca_file_reaches_mirror_and_configs_only_entries(tls_peers: TLSPeers) -> None:
    """ca_file verifies the HTTPS mirror ([host] entry) and the registry pulled directly (file root)."""
    hosts = render(tls_peers, "ca", f"""
mirrors:
  docker.io:
    endpoint: ["https://{tls_peers.host}"]
configs:
  "{tls_peers.host}":
    tls:
      ca_file: "{tls_peers.cert}"
""")
    assert (hosts / tls_peers.host / "hosts.toml").read_text().count("[host]") == 1
    tls_peers.containerd.pull("docker.io/library/secure:1", hosts)
    tls_peers.registry.wait_request(lambda m, p: (m, p) == ("HEAD", "/v2/library/secure/manifests/1?ns=docker.io"))
    tls_peers.containerd.pull(f"{tls_peers.host}/team/direct:1", hosts)
    tls_peers.registry.wait_request(lambda m, p: (m, p) == ("HEAD", "/v2/team/direct/manifests/1"))


def test_insecure_skip_verify_accepts_the_self_signed_certificate(tls_peers: TLSPeers) -> None:
    """insecure_skip_verify (rendered as skip_verify) lets containerd pull without the CA."""
    hosts = render(tls_peers, "skip", f"""
configs:
  "{tls_peers.host}":
    tls:
      insecure_skip_verify: true
""")
    ref = f"{tls_peers.host}/team/insecure:1"
    empty = tls_peers.work / "empty-certs.d"
    empty.mkdir(exist_ok=True)
    with pytest.raises(CtrError, match=r"x509|certificate"):
        tls_peers.containerd.pull(ref, empty)
    tls_peers.containerd.pull(ref, hosts)


def test_configs_only_file_needs_the_host_stub(tls_peers: TLSPeers) -> None:
    """Without the [host] stub containerd ignores the file (x509 error); the rendered file works."""
    hosts = render(tls_peers, "stub", f"""
configs:
  "{tls_peers.host}":
    tls:
      ca_file: "{tls_peers.cert}"
""")
    rendered = (hosts / tls_peers.host / "hosts.toml").read_text()
    stubless = tls_peers.work / "nostub-certs.d"
    (stubless / tls_peers.host).mkdir(parents=True)
    (stubless / tls_peers.host / "hosts.toml").write_text(rendered.replace("[host]\n", ""))
    ref = f"{tls_peers.host}/team/nostub:1"
    explained = subprocess.run([str(K3SREG_BIN), "mirrors", "explain", ref, "--hosts-dir", str(stubless),
                                "--runtime", "containerd"], capture_output=True, text=True, check=True).stdout
    assert "has no [host] table" in explained and "TLS: HTTPS, system CAs" in explained
    with pytest.raises(CtrError, match=r"x509|certificate"):
        tls_peers.containerd.pull(ref, stubless)
    tls_peers.containerd.pull(ref, hosts)
