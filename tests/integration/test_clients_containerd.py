"""containerd (``ctr images pull --hosts-dir``, and ``ctr images push``) against each registry variant.

The registry, containerd and ctr all run inside a network namespace with only loopback up, and every hosts.toml
names a local ``server``: a wrong config fails here instead of reaching a public registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import api
from tests.peers.containerd import Containerd, CtrError, HostEntry, write_hosts_toml
from tests.peers.images import TestLayout, build_layout, read_blob
from tests.peers.netns import NetNs
from tests.peers.registry import VARIANTS, RegistryProcess, free_port, make_variant
from tests.peers.skopeo import Skopeo


@dataclass(frozen=True)
class Node:
    """A registry and a containerd side by side in one isolated namespace, with the test images pushed."""

    registry: RegistryProcess
    containerd: Containerd
    workdir: Path


@pytest.fixture(scope="session")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> TestLayout:
    """An image with two 6 MiB random layers, large enough for concurrent multi-segment blob GETs."""
    return build_layout(tmp_path_factory.mktemp("big-layout"), layers=2, layer_size=6 * 1024 * 1024, seed=5)


@pytest.fixture(scope="session", params=list(VARIANTS))
def node(
    request: pytest.FixtureRequest,
    netns: NetNs,
    oci_layout: TestLayout,
    big_layout: TestLayout,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Node]:
    """Registry of each variant plus a private containerd, in the session's namespace."""
    variant: str = request.param
    workdir = tmp_path_factory.mktemp(f"ctd-{variant}")
    inside = Skopeo(netns)
    with make_variant(variant, workdir / "registry", netns=netns) as reg, Containerd(workdir / "ctd", netns) as ctd:
        inside.copy(oci_layout.oci_ref(), f"docker://{reg.host}/library/demo:1")
        inside.copy(oci_layout.oci_ref(oci_layout.multi_tag), f"docker://{reg.host}/library/demo:multi", all=True)
        inside.copy(
            oci_layout.oci_ref(oci_layout.multi_tag),
            f"docker://{reg.host}/library/demo:v2s2",
            all=True,
            extra=["--format", "v2s2"],
        )
        inside.copy(big_layout.oci_ref(), f"docker://{reg.host}/library/big:1")
        yield Node(reg, ctd, workdir)


def test_pull_through_server_sends_ns(node: Node, oci_layout: TestLayout, tmp_path: Path) -> None:
    """ctr pulls docker.io/library/demo:1 from the registry named as ``server``; every request carries ?ns=."""
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, "docker.io", node.registry.url)
    before = len(node.registry.requests())
    node.containerd.pull("docker.io/library/demo:1", hosts)
    assert node.containerd.images()["docker.io/library/demo:1"] == oci_layout.single.digest
    reg = node.registry
    reg.wait_for("HEAD", "/v2/library/demo/manifests/1?ns=docker.io", since=before)
    for blob in oci_layout.single.blobs:
        reg.wait_for("GET", f"/v2/library/demo/blobs/{blob}?ns=docker.io", since=before)


def test_pull_index_through_mirror_host(node: Node, oci_layout: TestLayout, tmp_path: Path) -> None:
    """ctr resolves an index through a ``[host]`` mirror (server unreachable) and fetches only arm64 content."""
    hosts = tmp_path / "certs.d"
    dead_server = f"http://127.0.0.1:{free_port()}"
    write_hosts_toml(hosts, "docker.io", dead_server, [HostEntry(node.registry.url)])
    before = len(node.registry.requests())
    node.containerd.pull("docker.io/library/demo:multi", hosts, platform="linux/arm64")
    assert node.containerd.images()["docker.io/library/demo:multi"] == oci_layout.index.digest
    arm64 = oci_layout.platforms["arm64"]
    reg = node.registry
    reg.wait_for("GET", f"/v2/library/demo/manifests/{arm64.digest}?ns=docker.io", since=before)
    for blob in arm64.layers:
        reg.wait_for("GET", f"/v2/library/demo/blobs/{blob.digest}?ns=docker.io", since=before)
    amd64_layers = {layer.digest for layer in oci_layout.platforms["amd64"].layers}
    assert not [p for _, p in reg.requests()[before:] if any(d in p for d in amd64_layers)]


def test_pull_unknown_tag_fails_locally(node: Node, tmp_path: Path) -> None:
    """A tag the registry does not have makes ctr fail with not found (nothing else is asked)."""
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, "docker.io", node.registry.url)
    with pytest.raises(CtrError, match="not found"):
        node.containerd.pull("docker.io/library/demo:nope", hosts)
    node.registry.wait_for("HEAD", "/v2/library/demo/manifests/nope?ns=docker.io")


def test_pull_docker_manifest_list(node: Node, netns: NetNs, tmp_path: Path) -> None:
    """ctr pulls a Docker v2 schema 2 manifest list (HEAD answered with its real size and digest) for arm64."""
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, "docker.io", node.registry.url)
    node.containerd.pull("docker.io/library/demo:v2s2", hosts, platform="linux/arm64")
    served = netns.call(api.manifest, node.registry.url, "library/demo", "v2s2", "HEAD")
    assert served.headers["content-type"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert node.containerd.images()["docker.io/library/demo:v2s2"] == served.headers["docker-content-digest"]


def test_pull_big_image(node: Node, big_layout: TestLayout, tmp_path: Path) -> None:
    """ctr pulls and unpacks an image with 6 MiB layers (digests and diff ids verified by containerd)."""
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, "docker.io", node.registry.url)
    node.containerd.pull("docker.io/library/big:1", hosts)
    assert node.containerd.images()["docker.io/library/big:1"] == big_layout.single.digest
    for blob in big_layout.single.blobs:
        node.registry.wait_for("GET", f"/v2/library/big/blobs/{blob}?ns=docker.io")


def test_pull_by_registry_own_name_has_no_ns(node: Node, oci_layout: TestLayout, tmp_path: Path) -> None:
    """ctr pulling 127.0.0.1:PORT/library/demo:1 talks to that host directly, without an ?ns= parameter."""
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, node.registry.host, node.registry.url)
    before = len(node.registry.requests())
    ref = f"{node.registry.host}/library/demo:1"
    node.containerd.pull(ref, hosts)
    assert node.containerd.images()[ref] == oci_layout.single.digest
    node.registry.wait_for("HEAD", "/v2/library/demo/manifests/1", since=before)
    assert not [p for _, p in node.registry.requests()[before:] if "ns=" in p]


def test_ctr_push_index(node: Node, netns: NetNs, oci_layout: TestLayout, tmp_path: Path) -> None:
    """ctr images push uploads an index and both platforms; the registry then serves the index bytes unchanged."""
    hosts = tmp_path / "certs.d"
    reg = node.registry
    write_hosts_toml(hosts, "docker.io", reg.url)
    write_hosts_toml(hosts, reg.host, reg.url, [HostEntry(reg.url, ("pull", "resolve", "push"))])
    node.containerd.pull("docker.io/library/demo:multi", hosts, all_platforms=True)
    target = f"{reg.host}/ctr/pushed:m"
    node.containerd.ctr("images", "tag", "--force", "docker.io/library/demo:multi", target)
    node.containerd.ctr("images", "push", "--hosts-dir", str(hosts), target)
    served = netns.call(api.manifest, reg.url, "ctr/pushed", "m")
    assert served.status == 200
    assert served.body == read_blob(oci_layout.root, oci_layout.index.digest)
    for image in oci_layout.platforms.values():
        for blob in image.blobs:
            assert netns.call(api.blob_head, reg.url, "ctr/pushed", blob).status == 200
