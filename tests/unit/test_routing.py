"""Routing of requests to local repositories or upstreams (ns parameter, path prefix, proxy section)."""

from __future__ import annotations

import pytest

from k3sreg import errors
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.upstream.routing import Router

HUB = UpstreamSettings(name="docker.io", url="https://registry-1.docker.io")
QUAY = UpstreamSettings(name="quay.io", url="https://quay.io")


def router(proxy: UpstreamSettings | None = None) -> Router:
    ups = [HUB, QUAY] if proxy is None else [proxy]
    return Router(ups, ["registry.local", "127.0.0.1:30500"], proxy)


def test_ns_selects_upstream_and_cache_name() -> None:
    """`ns=docker.io` goes to docker.io and is cached under docker.io/<repo>."""
    t = router().resolve("library/nginx", "docker.io")
    assert t.upstream is HUB and t.upstream_repo == "library/nginx" and t.cache_repo == "docker.io/library/nginx"


def test_prefix_selects_upstream_with_library_normalisation() -> None:
    """A docker.io/ path prefix routes like ns, and one-component Hub names get library/."""
    t = router().resolve("docker.io/nginx", None)
    assert t.upstream is HUB and t.upstream_repo == "library/nginx" and t.cache_repo == "docker.io/library/nginx"
    assert router().resolve("quay.io/org/app", None).cache_repo == "quay.io/org/app"


@pytest.mark.parametrize("ns", [None, "registry.local", "127.0.0.1:30500", "REGISTRY.LOCAL"])
def test_local_when_no_ns_or_own_name(ns: str | None) -> None:
    """No ns, or an ns naming this registry, means a local repository."""
    assert router().resolve("team/app", ns).is_local


def test_unknown_ns_is_name_unknown() -> None:
    """An ns with no upstream answers NAME_UNKNOWN so containerd tries its next endpoint."""
    with pytest.raises(errors.NameUnknown):
        router().resolve("x", "ghcr.io")


def test_plain_registry_ignores_ns() -> None:
    """Without upstreams, ns is ignored, as registry:2 does."""
    assert Router([], [], None).resolve("library/nginx", "docker.io").cache_repo == "library/nginx"


def test_proxy_section_is_default_and_caches_under_plain_names() -> None:
    """Distribution's proxy: upstream serves requests without ns, cached under the plain name."""
    t = router(HUB).resolve("library/nginx", None)
    assert t.upstream is HUB and t.default and t.cache_repo == "library/nginx"


MIRROR = UpstreamSettings(name="mirror.example:5000", url="http://mirror.example:5000")


@pytest.mark.parametrize("ns", ["docker.io", "ghcr.io"])
def test_proxy_section_takes_every_ns_no_upstream_claims(ns: str) -> None:
    """With proxy: (a Hub mirror not named docker.io), containerd's ns=docker.io goes to it, as registry:2
    ignores ns: same upstream, same plain cache name as without ns."""
    t = router(MIRROR).resolve("library/nginx", ns)
    assert t.upstream is MIRROR and t.default and t.cache_repo == "library/nginx"


def test_proxy_section_leaves_own_names_and_listed_upstreams_alone() -> None:
    """With proxy:, an ns naming this registry stays local and an ns an upstreams entry claims goes there."""
    routed = Router([MIRROR, QUAY], ["registry.local"], MIRROR)
    assert routed.resolve("team/app", "registry.local").is_local
    assert routed.resolve("org/app", "quay.io").upstream is QUAY
