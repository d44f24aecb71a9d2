"""Image references and Docker Hub's names, normalised once for every layer."""

from __future__ import annotations

import pytest

from k3sreg.oci.reference import canonical_repository, parse_image


@pytest.mark.parametrize(
    ("registry", "repo", "expected"),
    [
        ("docker.io", "nginx", "library/nginx"),
        ("docker.io", "library/nginx", "library/nginx"),
        ("docker.io", "bitnami/redis", "bitnami/redis"),
        ("ghcr.io", "nginx", "nginx"),
        ("quay.io", "org/app", "org/app"),
    ],
)
def test_docker_hub_library_normalisation(registry: str, repo: str, expected: str) -> None:
    """Only Docker Hub puts one-component names under library/."""
    assert canonical_repository(registry, repo) == expected


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", ("docker.io", "library/busybox", "latest", "")),
        ("rancher/pause:3.6", ("docker.io", "rancher/pause", "3.6", "")),
        ("index.docker.io/library/nginx", ("docker.io", "library/nginx", "latest", "")),
        ("localhost:5000/app:1", ("localhost:5000", "app", "1", "")),
        ("ghcr.io/a/b@sha256:" + "0" * 64, ("ghcr.io", "a/b", "", "sha256:" + "0" * 64)),
        ("Registry/x:1", ("Registry", "x", "1", "")),
    ],
)
def test_parse_image(image: str, expected: tuple[str, str, str, str]) -> None:
    """References normalise like containerd's ParseDockerRef."""
    ref = parse_image(image)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
