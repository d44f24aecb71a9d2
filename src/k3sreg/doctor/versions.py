"""K3s and containerd versions, and which registries.yaml rules a version follows (../shared/k3s/REGISTRIES_YAML.md
§13: each change reached every maintained minor release at a different patch).

    gate            from (per minor; every later minor has it)           what changes
    HOSTS_TOML      1.26.13  1.27.10  1.28.6  1.29.1                     hosts.toml in certs.d (config_path),
                                                                         --disable-default-registry-endpoint,
                                                                         embedded registry (experimental)
    WILDCARD        1.26.15  1.27.12  1.28.8  1.29.3                     mirrors."*" / configs."*"
    EMBEDDED_GA     1.29.12  1.30.8   1.31.4                             embedded registry generally available
    CONTAINERD2     1.31.6   1.32.2                                      containerd 2: config.toml v3 paths
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

Gate = Mapping[int, int]
HOSTS_TOML: Gate = {26: 13, 27: 10, 28: 6, 29: 1}
WILDCARD: Gate = {26: 15, 27: 12, 28: 8, 29: 3}
EMBEDDED_GA: Gate = {29: 12, 30: 8, 31: 4}
CONTAINERD2: Gate = {31: 6, 32: 2}
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)([^\s()]*)")


@dataclass(frozen=True, order=True)
class Version:
    """A release number and its suffix (`+k3s1`, `-k3s2`)."""

    major: int
    minor: int
    patch: int
    suffix: str = ""

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}{self.suffix}"

    def at_least(self, gate: Gate) -> bool:
        """Whether this K3s release has the change that `gate` dates (a minor above the gate's has it)."""
        if self.major != 1:
            return self.major > 1
        if self.minor > max(gate):
            return True
        if self.minor in gate:
            return self.patch >= gate[self.minor]
        return False


def parse_version(text: str, program: str) -> Version | None:
    """The version in `k3s --version` / `ctr --version` / `containerd --version` output: the first `vX.Y.Z`
    after the program's name (or anywhere); None when there is none."""
    at = text.find(f"{program} ")
    match = _VERSION.search(text, at if at >= 0 else 0)
    if match is None:
        return None
    return Version(int(match.group(1)), int(match.group(2)), int(match.group(3)), match.group(4))


@dataclass(frozen=True)
class Runtime:
    """What a node runs: the K3s/RKE2 release and its containerd, when their binaries answered."""

    program: str
    k3s: Version | None
    containerd: Version | None

    @property
    def hosts_toml(self) -> bool:
        """K3s writes certs.d/*/hosts.toml (unknown version: assume a current one)."""
        return self.k3s is None or self.k3s.at_least(HOSTS_TOML)

    @property
    def containerd2(self) -> bool:
        """containerd 2.x (config.toml version 3)."""
        if self.containerd is not None:
            return self.containerd.major >= 2
        return self.k3s is not None and self.k3s.at_least(CONTAINERD2)

    def rules(self) -> list[str]:
        """The registries.yaml rules this release follows, in a few words each."""
        if self.k3s is None:
            return []
        out = []
        if self.k3s.at_least(HOSTS_TOML):
            out.append("hosts.toml in certs.d")
        else:
            out.append("mirrors written into config.toml (no hosts.toml; rewrites also apply to the registry "
                       "itself)")
        out.append("wildcard \"*\"" if self.k3s.at_least(WILDCARD) else "no wildcard \"*\"")
        if self.k3s.at_least(EMBEDDED_GA):
            out.append("embedded registry GA")
        elif self.k3s.at_least(HOSTS_TOML):
            out.append("embedded registry experimental")
        else:
            out.append("no embedded registry")
        if self.containerd is not None or self.k3s.at_least(HOSTS_TOML):
            out.append("credentials in config.toml v3" if self.containerd2 else "credentials in config.toml v2")
        return out
