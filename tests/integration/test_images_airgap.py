"""The air-gap trip with real peers: list → sync → bundle → a k3sreg with no route to the source → containerd.

docker-registry 2.8.2 on the host's loopback plays the internet (`docker.io` in the lists), seeded by skopeo with
an OCI index, a Docker manifest list, a single image and k3sreg's own image. The air-gapped side is the
session's network namespace (loopback only): its k3sreg, skopeo and containerd cannot reach the source.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from image.build import Built
from tests.peers.containerd import Containerd, write_hosts_toml
from tests.peers.images import TestLayout
from tests.peers.netns import NetNs
from tests.peers.registry import K3SREG_BIN, DockerRegistry, K3sregServer
from tests.peers.skopeo import Buildah, Podman, Skopeo

pytestmark = pytest.mark.timeout(900)


@dataclass
class Internet:
    source: DockerRegistry
    image: Built
    refs: dict[str, str]  # name in the list -> repository:tag on the source
    list_file: Path
    work: Path


def k3sreg(*args: str, netns: NetNs | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the k3sreg CLI (inside `netns` when given)."""
    cmd = [str(K3SREG_BIN), *args]
    done = subprocess.run(netns.wrap(cmd) if netns else cmd, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def events(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def internet(oci_layout: TestLayout, image: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Internet]:
    """The source registry holding an OCI index, a Docker manifest list, an image and k3sreg's own image."""
    work = tmp_path_factory.mktemp("airgap")
    skopeo = Skopeo()
    with DockerRegistry(work / "source") as source:
        refs = {"docker.io/library/demo:1": "library/demo:1", "docker.io/library/demo:multi": "library/demo:multi",
                "docker.io/team/dlist:1": "team/dlist:1",
                f"docker.io/k3sreg/k3sreg:{image.version}": f"k3sreg/k3sreg:{image.version}"}
        skopeo.copy(oci_layout.oci_ref(), f"docker://{source.host}/library/demo:1")
        skopeo.copy(oci_layout.oci_ref(oci_layout.multi_tag), f"docker://{source.host}/library/demo:multi", all=True)
        skopeo.copy(oci_layout.oci_ref(oci_layout.multi_tag), f"docker://{source.host}/team/dlist:1", all=True,
                    extra=("--format", "v2s2"))
        skopeo.copy(f"oci-archive:{image.oci_archive}", f"docker://{source.host}/k3sreg/k3sreg:{image.version}")
        list_file = work / "images.yaml"
        list_file.write_text(json.dumps({"registries": {"docker.io": {"url": source.url}},
                                         "images": list(refs)}))
        yield Internet(source, image, refs, list_file, work)


def raw(skopeo: Skopeo, host: str, ref: str) -> bytes:
    return skopeo.raw_manifest(f"docker://{host}/{ref}")


def test_sync_copies_byte_identical_manifests_then_skips_what_is_there(internet: Internet, tmp_path: Path) -> None:
    """Indexes, Docker lists and images arrive with the source's bytes; a second sync copies nothing."""
    skopeo = Skopeo()
    with K3sregServer(tmp_path / "k3sreg") as target:
        first = events(k3sreg("images", "sync", "-f", str(internet.list_file), "--to", target.url, "--json"))
        assert [e["status"] for e in first if e["event"] == "image"] == ["copying"] * 4
        assert next(e for e in first if e["event"] == "done")["failed"] == 0
        for ref in internet.refs.values():
            assert raw(skopeo, target.host, ref) == raw(skopeo, internet.source.host, ref)
        assert {e["status"] for e in first if e["event"] == "blob"} >= {"copied", "mounted"}
        again = events(k3sreg("images", "sync", "-f", str(internet.list_file), "--to", target.host, "--json"))
        assert [e["status"] for e in again if e["event"] == "image"] == ["present"] * 4
        assert not [e for e in again if e["event"] == "blob"]


def test_sync_to_a_layout_resumes_a_cut_blob(internet: Internet, tmp_path: Path) -> None:
    """An interrupted blob (its .part file) is continued from its end, and the layout reads with skopeo."""
    layout = tmp_path / "layout"
    k3sreg("images", "sync", "-f", str(internet.list_file), "--to", f"oci:{layout}")
    biggest = max((layout / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = biggest.read_bytes()
    (layout / "blobs/sha256" / f".{biggest.name}.part").write_bytes(data[: len(data) // 2])
    biggest.unlink()
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] = []  # as if the run had stopped before tagging anything
    (layout / "index.json").write_text(json.dumps(index))
    done = events(k3sreg("images", "sync", "-f", str(internet.list_file), "--to", f"oci:{layout}", "--json"))
    resumed = [e for e in done if e["event"] == "blob" and e["status"] == "resumed"]
    assert [e["digest"] for e in resumed] == [f"sha256:{biggest.name}"]
    assert biggest.read_bytes() == data
    inspected = Skopeo().inspect(f"oci:{layout}:docker.io/k3sreg/k3sreg:{internet.image.version}")
    assert inspected["Digest"] == internet.image.digest


def test_full_trip_into_a_namespace_without_a_route(internet: Internet, netns: NetNs, oci_layout: TestLayout,
                                                    tmp_path: Path) -> None:
    """export → import inside the air-gapped namespace → same digests and bytes → containerd pulls via hosts.toml,
    and the K3s tarball of k3sreg's own image imports into containerd."""
    bundle = tmp_path / "images.tar.zst"
    k3sreg("images", "export", "-f", str(internet.list_file), "-o", str(bundle))
    assert not list(tmp_path.glob(".*.layout"))  # the spool is gone once the bundle is written
    inside = Skopeo(netns)
    with pytest.raises(Exception):  # noqa: B017 - the namespace really has no route to the source
        inside.inspect(f"docker://{internet.source.host}/library/demo:1")
    with K3sregServer(tmp_path / "edge", netns=netns) as edge:
        k3s_dir = tmp_path / "agent-images"
        k3sreg("images", "import", str(bundle), "--to", edge.url, "--k3s", str(k3s_dir), "--image",
               "docker.io/k3sreg/*", netns=netns)
        k3sreg("images", "import", str(bundle), "--to", edge.url, netns=netns)
        for ref in internet.refs.values():
            assert raw(inside, edge.host, ref) == raw(Skopeo(), internet.source.host, ref)
        hosts = tmp_path / "certs.d"
        write_hosts_toml(hosts, "docker.io", edge.url)
        with Containerd(tmp_path / "ctd", netns) as ctd:
            ctd.pull("docker.io/library/demo:multi", hosts, platform="linux/arm64")
            ctd.pull(f"docker.io/k3sreg/k3sreg:{internet.image.version}", hosts)
            images = ctd.images()
            tarballs = sorted(k3s_dir.iterdir())
            assert [t.name for t in tarballs] == [f"docker.io_k3sreg_k3sreg_{internet.image.version}.tar"]
            ctd.ctr("images", "rm", f"docker.io/k3sreg/k3sreg:{internet.image.version}")
            ctd.ctr("images", "import", "--all-platforms", "--snapshotter", "native", str(tarballs[0]))
            imported = ctd.images()
        assert images["docker.io/library/demo:multi"] == oci_layout.index.digest
        assert images[f"docker.io/k3sreg/k3sreg:{internet.image.version}"] == internet.image.digest
        assert imported[f"docker.io/k3sreg/k3sreg:{internet.image.version}"] == internet.image.digest


def test_damaged_or_cut_bundles_push_nothing(internet: Internet, netns: NetNs, tmp_path: Path) -> None:
    """A flipped byte or a cut file is one clear error (exit 1), and the registry gets no tag at all."""
    bundle = tmp_path / "b.tar.zst"
    k3sreg("images", "export", "-f", str(internet.list_file), "-o", str(bundle))
    data = bundle.read_bytes()
    damaged, cut = tmp_path / "damaged.tar.zst", tmp_path / "cut.tar.zst"
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(flipped))
    cut.write_bytes(data[: len(data) * 2 // 3])
    with K3sregServer(tmp_path / "edge", netns=netns) as edge:
        for bad, word in ((damaged, "corrupted"), (cut, "truncated")):
            done = k3sreg("images", "import", str(bad), "--to", edge.url, netns=netns, check=False)
            assert done.returncode == 1, done.stderr
            assert word in done.stderr and "Traceback" not in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1
        listed = json.loads(k3sreg("images", "ls", edge.url, "--json", netns=netns).stdout)
        assert listed["images"] == []


def test_push_archives_from_buildah_podman_and_docker_save(internet: Internet, tmp_path: Path) -> None:
    """oci-archive, docker-archive (podman save) and an OCI layout (buildah push oci:) are pushed without a
    daemon; the OCI ones keep their digest, and ls shows tags, platforms and sizes."""
    source_ref = f"{internet.source.host}/library/demo:1"
    with Podman(tmp_path / "podman") as podman, Buildah(tmp_path / "buildah") as buildah, \
            K3sregServer(tmp_path / "k3sreg") as target:
        podman.pull(source_ref)
        podman.run("save", "--format", "oci-archive", "-o", str(tmp_path / "app.oci.tar"), source_ref)
        podman.run("save", "--format", "docker-archive", "-o", str(tmp_path / "app.docker.tar"), source_ref)
        container = buildah.from_scratch()
        (tmp_path / "hello").write_text("hello\n")
        buildah.copy(container, tmp_path / "hello", "/hello")
        buildah.commit(container, "localhost/built:1")
        buildah.run("push", "localhost/built:1", f"oci:{tmp_path / 'built'}:1")
        k3sreg("images", "push", str(tmp_path / "app.oci.tar"), "--to", f"{target.host}/ci/oci:1")
        k3sreg("images", "push", str(tmp_path / "app.docker.tar"), "--to", f"{target.host}/ci/docker:1")
        k3sreg("images", "push", str(tmp_path / "built"), "--to", f"{target.host}/ci/built:1")
        skopeo = Skopeo()
        oci = skopeo.inspect(f"docker://{target.host}/ci/oci:1")
        docker = skopeo.inspect(f"docker://{target.host}/ci/docker:1")
        assert docker["Layers"] and oci["Architecture"] == docker["Architecture"] == "amd64"
        built = skopeo.inspect(f"docker://{target.host}/ci/built:1")
        assert len(built["Layers"]) == 1
        listed = json.loads(k3sreg("images", "ls", target.url, "--json").stdout)["images"]
        assert [(r["repository"], r["tag"]) for r in listed] == [("ci/built", "1"), ("ci/docker", "1"),
                                                                  ("ci/oci", "1")]
        assert all(r["size"] > 0 for r in listed) and listed[2]["platforms"] == ["linux/amd64"]


def test_referrers_travel_with_their_subject(oci_layout: TestLayout, tmp_path: Path) -> None:
    """With `referrers: true` a signature (OCI referrers API of a k3sreg source) is copied and found again."""
    skopeo = Skopeo()
    with K3sregServer(tmp_path / "source") as source, K3sregServer(tmp_path / "target") as target:
        skopeo.copy(oci_layout.oci_ref(), f"docker://{source.host}/team/signed:1")
        skopeo.copy(oci_layout.oci_ref(oci_layout.referrer_tag), f"docker://{source.host}/team/signed:sig")
        listing = tmp_path / "list.yaml"
        listing.write_text(f"referrers: true\nimages: ['{source.host}/team/signed:1']\n")
        k3sreg("images", "sync", "-f", str(listing), "--to", target.url)
        url = f"{target.url}/v2/team/signed/referrers/{oci_layout.single.digest}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            found = json.loads(answer.read())
        assert [m["digest"] for m in found["manifests"]] == [oci_layout.referrer.digest]


def test_bad_list_is_a_usage_error_with_line_and_column(tmp_path: Path) -> None:
    """An unknown key stops the command before anything is copied: exit 2, FILE:LINE:COL on stderr."""
    listing = tmp_path / "list.yaml"
    listing.write_text("images:\n  - name: nginx\n    tagz: [1]\n")
    done = k3sreg("images", "sync", "-f", str(listing), "--to", "oci:" + str(tmp_path / "x"), check=False)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {listing}:3:5: images[0].tagz: unknown key; did you mean 'tags'?")
