"""podman and buildah (vfs storage, private roots) against each registry implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import api
from tests.peers.images import TestLayout
from tests.peers.registry import RegistryProcess
from tests.peers.skopeo import Buildah, Podman, Skopeo


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """podman with its own empty vfs storage."""
    with Podman(tmp_path / "podman") as client:
        yield client


@pytest.fixture
def buildah(tmp_path: Path) -> Iterator[Buildah]:
    """buildah with its own empty vfs storage."""
    with Buildah(tmp_path / "buildah") as client:
        yield client


def test_podman_pull_and_push(
    registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout, podman: Podman
) -> None:
    """podman pulls an image pushed by skopeo (same digest) and pushes it under a new name, mounting its layers."""
    skopeo.copy(oci_layout.oci_ref(), f"docker://{registry.host}/podman/src:1")
    podman.pull(f"{registry.host}/podman/src:1")
    assert podman.image_digest(f"{registry.host}/podman/src:1") == oci_layout.single.digest
    podman.tag(f"{registry.host}/podman/src:1", f"{registry.host}/podman/dst:2")
    podman.push(f"{registry.host}/podman/dst:2", f"{registry.host}/podman/dst:2")
    assert api.tags(registry.url, "podman/dst") == ["2"]
    pushed = skopeo.inspect(f"docker://{registry.host}/podman/dst:2")
    layers = [layer.digest for layer in oci_layout.single.layers]
    assert pushed["Layers"] == layers
    for digest in layers:
        assert api.blob_head(registry.url, "podman/dst", digest).status == 200
        # podman mounts known layers from podman/src; only a failed mount would make it upload them again.
        uploads = [p for m, p in registry.requests() if m == "PUT" and "podman/dst" in p and digest[7:] in p]
        assert uploads == [], uploads


def test_podman_pull_multi_platform(
    registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout, podman: Podman
) -> None:
    """podman pull --arch arm64 resolves the index served by the registry to the arm64 image."""
    skopeo.copy(oci_layout.oci_ref(oci_layout.multi_tag), f"docker://{registry.host}/podman/multi:m", all=True)
    podman.run("pull", "--tls-verify=false", "--quiet", "--arch", "arm64", f"{registry.host}/podman/multi:m")
    arch = podman.run("image", "inspect", "--format", "{{.Architecture}}", f"{registry.host}/podman/multi:m")
    assert arch.stdout.strip() == "arm64"


def test_buildah_from_scratch_commit_push(
    registry: RegistryProcess, skopeo: Skopeo, buildah: Buildah, podman: Podman, tmp_path: Path
) -> None:
    """buildah from scratch → copy → commit → push; the image is then listed and pulled back by podman."""
    payload = tmp_path / "hello.txt"
    payload.write_text("hello from buildah\n")
    container = buildah.from_scratch()
    buildah.copy(container, payload, "/hello.txt")
    buildah.config(container, "--cmd", "/hello.txt", "--label", "k3sreg.test=buildah")
    buildah.commit(container, "localhost/built:1")
    ref = f"{registry.host}/buildah/built:1"
    buildah.push("localhost/built:1", ref)
    assert api.tags(registry.url, "buildah/built") == ["1"]
    info = skopeo.inspect(f"docker://{ref}")
    assert info["Labels"]["k3sreg.test"] == "buildah"
    podman.pull(ref)
    assert podman.image_digest(ref) == info["Digest"]
