"""What a rollout acts on: nodes, flavors and their paths and services.

A node is reached over SSH and carries one K3s (or RKE2) service. The flavor decides the paths, the role the
service:

    flavor  registries.yaml                    services (server / agent)
    k3s     /etc/rancher/k3s/registries.yaml   k3s / k3s-agent
    rke2    /etc/rancher/rke2/registries.yaml  rke2-server / rke2-agent

and containerd's hosts directory is /var/lib/rancher/<flavor>/agent/etc/containerd/certs.d.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

Flavor = Literal["k3s", "rke2"]
Role = Literal["server", "agent"]
FLAVORS: tuple[Flavor, ...] = ("k3s", "rke2")

_SERVICES: dict[tuple[Flavor, Role], str] = {
    ("k3s", "server"): "k3s",
    ("k3s", "agent"): "k3s-agent",
    ("rke2", "server"): "rke2-server",
    ("rke2", "agent"): "rke2-agent",
}


def service_for(flavor: Flavor, role: Role) -> str:
    """The systemd unit that runs `flavor` in `role` (e.g. k3s + agent -> `k3s-agent`)."""
    return _SERVICES[(flavor, role)]


def unit_candidates(flavor: Flavor | None, role: Role | None) -> list[tuple[Flavor, Role, str]]:
    """Every (flavor, role, service) consistent with what the inventory says, for detection on the node."""
    return [
        (f, r, s)
        for (f, r), s in _SERVICES.items()
        if (flavor is None or f == flavor) and (role is None or r == role)
    ]


def registries_path(flavor: Flavor) -> PurePosixPath:
    """Where `flavor` reads registries.yaml."""
    return PurePosixPath(f"/etc/rancher/{flavor}/registries.yaml")


def certs_d_path(flavor: Flavor) -> PurePosixPath:
    """The containerd hosts directory that `flavor` fills from registries.yaml on start."""
    return PurePosixPath(f"/var/lib/rancher/{flavor}/agent/etc/containerd/certs.d")


@dataclass(frozen=True)
class Node:
    """One cluster node as the inventory describes it; `flavor`/`role` None means "detect on the node"."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    sudo: bool = False
    role: Role | None = None
    flavor: Flavor | None = None

    @property
    def target(self) -> str:
        """`user@address:port`, for messages."""
        return f"{self.user}@{self.address}:{self.port}"
