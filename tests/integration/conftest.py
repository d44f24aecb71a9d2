"""Fixtures for end-to-end tests against real peers; every peer is started once per session.

* ``registry``: a running registry, parametrized over ``docker-registry`` 2.8.2, ``k3sreg`` and ``k3sreg-w2``
  (two workers on one port), so one test body proves all: the docker-registry run shows the test is right.
  Deletes are enabled. Tests share it, so each test pushes to repository names of its own.
* ``crashable``: a fresh registry per test, of the variant given by indirect parametrization, on
  ``tmp_path/data``, for tests that SIGKILL and restart it.
* ``docker_registry`` / ``k3sreg_registry``: one instance of each, for tests about a single implementation.
* ``skopeo``: a ``tests.peers.skopeo.Skopeo``.
* ``netns``: an isolated network namespace (loopback only) for the session.
* ``image``: k3sreg's own image (`make image`), built at most once per session (reused from .cache/image).
Every test under this directory is marked ``peers``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from image.build import REPO, Built, build
from tests.peers.netns import NetNs, network_namespace
from tests.peers.registry import VARIANTS, DockerRegistry, K3sregServer, RegistryProcess, make_variant
from tests.peers.skopeo import Skopeo

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this directory as a ``peers`` test."""
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.peers)


@pytest.fixture(scope="session", params=list(VARIANTS))
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """A running registry of each variant in turn: docker-registry, k3sreg, k3sreg with 2 workers."""
    variant: str = request.param
    with make_variant(variant, tmp_path_factory.mktemp(f"registry-{variant}")) as reg:
        yield reg


@pytest.fixture
def crashable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryProcess]:
    """A registry of variant ``request.param`` (parametrize indirectly) of its own, for tests that kill it."""
    variant: str = request.param
    reg = make_variant(variant, tmp_path / "reg", root=tmp_path / "data")
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    """One running docker-registry 2.8.2 (deletes enabled)."""
    with DockerRegistry(tmp_path_factory.mktemp("docker-registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def k3sreg_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """One running ``k3sreg serve`` (deletes enabled)."""
    with K3sregServer(tmp_path_factory.mktemp("k3sreg")) as reg:
        yield reg


@pytest.fixture(scope="session")
def skopeo() -> Skopeo:
    """skopeo with TLS verification off."""
    return Skopeo()


@pytest.fixture(scope="session")
def netns() -> Iterator[NetNs]:
    """A network namespace with only loopback up, for the whole session."""
    with network_namespace() as ns:
        yield ns


@pytest.fixture(scope="session")
def image() -> Built:
    """The image of this checkout, built at most once per session (reused from the cache when unchanged)."""
    return build(REPO)
