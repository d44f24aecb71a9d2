"""Version parsing and the release gates of ../shared/k3s/REGISTRIES_YAML.md §13."""

from __future__ import annotations

import pytest

from k3sreg.doctor.versions import CONTAINERD2, EMBEDDED_GA, HOSTS_TOML, WILDCARD, Runtime, Version, parse_version


def test_parse_k3s_and_containerd_output() -> None:
    """`k3s --version` and `k3s ctr --version` give the release and its suffix."""
    assert parse_version("k3s version v1.31.4+k3s1 (a562d090)\ngo version go1.22.9", "k3s version") == \
        Version(1, 31, 4, "+k3s1")
    assert parse_version("ctr github.com/k3s-io/containerd v1.7.23-k3s2", "containerd") == Version(1, 7, 23, "-k3s2")
    assert parse_version("rke2 version v1.30.8+rke2r1 (x)", "rke2 version") == Version(1, 30, 8, "+rke2r1")
    assert parse_version("no version here", "k3s version") is None


@pytest.mark.parametrize(("version", "gate", "has"), [
    ((1, 29, 0), HOSTS_TOML, False), ((1, 29, 1), HOSTS_TOML, True), ((1, 26, 12), HOSTS_TOML, False),
    ((1, 26, 13), HOSTS_TOML, True), ((1, 25, 99), HOSTS_TOML, False), ((1, 30, 0), HOSTS_TOML, True),
    ((1, 29, 2), WILDCARD, False), ((1, 29, 3), WILDCARD, True), ((1, 28, 99), EMBEDDED_GA, False),
    ((1, 31, 4), EMBEDDED_GA, True), ((1, 31, 5), CONTAINERD2, False), ((1, 33, 0), CONTAINERD2, True),
])
def test_gates_per_minor_release(version: tuple[int, int, int], gate: dict[int, int], has: bool) -> None:
    """A change reached each minor at its own patch; minors above the table have it, below do not."""
    assert Version(*version).at_least(gate) is has


def test_rules_of_a_release() -> None:
    """An old release writes config.toml mirrors; a current one hosts.toml, wildcards and GA Spegel."""
    old = Runtime("k3s", Version(1, 25, 4), None)
    assert not old.hosts_toml and "no wildcard \"*\"" in old.rules() and "no embedded registry" in old.rules()
    new = Runtime("k3s", Version(1, 32, 3), Version(2, 0, 4))
    assert new.hosts_toml and new.containerd2
    assert new.rules() == ["hosts.toml in certs.d", "wildcard \"*\"", "embedded registry GA",
                           "credentials in config.toml v3"]
    assert Runtime("k3s", None, None).hosts_toml and Runtime("k3s", None, None).rules() == []
