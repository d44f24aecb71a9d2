"""Platforms as image indexes and users spell them: `linux/arm64`, `linux/arm/v7`, `linux/amd64`.

containerd's rule for comparing them: `arm64` means `arm64/v8` when no variant is given, `arm` means `arm/v7`;
`aarch64` and `x86_64` are the kernel's names for `arm64` and `amd64`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_ARCH_ALIASES = {"aarch64": "arm64", "x86_64": "amd64", "x86-64": "amd64", "armhf": "arm", "armel": "arm"}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True, order=True)
class Platform:
    """An os/architecture[/variant] triple, normalised."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/arm64`, `linux/arm/v7`; ValueError with the expected form otherwise."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"expected a platform such as 'linux/amd64' or 'linux/arm/v7', got {text!r}")
        arch = _ARCH_ALIASES.get(parts[1], parts[1])
        return cls(parts[0], arch, parts[2] if len(parts) == 3 else "")

    @classmethod
    def of(cls, platform: Any) -> Platform | None:
        """The platform of an index entry's `platform` object; None when it has none (an attestation, say)."""
        if not isinstance(platform, dict):
            return None
        os, arch = platform.get("os"), platform.get("architecture")
        if not isinstance(os, str) or not isinstance(arch, str):
            return None
        variant = platform.get("variant")
        return cls(os.lower(), _ARCH_ALIASES.get(arch.lower(), arch.lower()),
                   variant.lower() if isinstance(variant, str) else "")

    def matches(self, other: Platform) -> bool:
        """Whether `other` (an index entry's platform) is this platform, containerd's default variants applied."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        default = _DEFAULT_VARIANT.get(self.architecture, "")
        return (self.variant or default) == (other.variant or default)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def wanted(entry_platform: Any, platforms: tuple[Platform, ...] | None) -> bool:
    """Whether an index entry with `entry_platform` is copied: every entry when `platforms` is None; entries
    without a platform (attestations, unknown kinds) only then."""
    if platforms is None:
        return True
    found = Platform.of(entry_platform)
    return found is not None and any(p.matches(found) for p in platforms)
