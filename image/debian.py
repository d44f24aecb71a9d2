"""The Debian 12 packages of the image: which ones, at which versions (the machine's apt sources), cached .debs.

Only run-time needs: the C library, python3.11 and the libraries its standard library loads, OpenSSL, and the
CA certificates. No dpkg, apt, shell or compiler: packages are unpacked with `dpkg-deb -x` on the build machine,
and their control fields are kept in /var/lib/dpkg/status.d/<package> so that image scanners can list them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGES: tuple[str, ...] = (
    "libc6",
    "libgcc-s1",          # pydantic-core, cryptography (Rust) and uvloop link libgcc_s
    "libstdc++6",         # frozenlist's extension is C++
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libssl3",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "ca-certificates",
    "base-files",         # only /etc/os-release (see ONLY), which scanners read to know the distribution
)

ONLY: dict[str, tuple[str, ...]] = {
    "base-files": ("etc/os-release", "usr/lib/os-release", "etc/debian_version"),
}
"""Packages of which only these paths are kept."""


class AptError(RuntimeError):
    """apt could not say or fetch what the image needs."""


@dataclass(frozen=True)
class Deb:
    """One package at the version the machine's apt sources offer."""

    name: str
    version: str
    arch: str
    sha256: str

    @property
    def filename(self) -> str:
        # apt-get download's own naming: the epoch's ':' is escaped as %3a.
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def resolve(names: Sequence[str] = PACKAGES) -> list[Deb]:
    """The candidate version of each package, from `apt-cache show` (running `apt-get update` once if needed)."""
    try:
        return _candidates(names)
    except AptError:
        if os.geteuid() != 0:
            raise
    # A fresh machine has no package lists yet.
    subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
    return _candidates(names)


def _candidates(names: Sequence[str]) -> list[Deb]:
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise AptError(f"apt-cache show failed: {proc.stderr.strip()[-500:]} (run apt-get update once)")
    found: dict[str, Deb] = {}
    for stanza in proc.stdout.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") in names and fields["Package"] not in found:
            found[fields["Package"]] = Deb(fields["Package"], fields["Version"], fields["Architecture"],
                                           fields["SHA256"])
    missing = [n for n in names if n not in found]
    if missing:
        raise AptError(f"apt knows no candidate for {', '.join(missing)} (run apt-get update once)")
    return [found[n] for n in names]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(debs: Sequence[Deb], cache: Path) -> list[Path]:
    """The .deb files of `debs` in `cache`, downloaded with `apt-get download` when missing; checked by SHA-256."""
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [d for d in debs if not (cache / d.filename).is_file() or _sha256(cache / d.filename) != d.sha256]
    if wanted:
        # The sandbox user _apt cannot write into a cache owned by another user; the files are checked below.
        proc = subprocess.run(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
             *[f"{d.name}={d.version}" for d in wanted]],
            cwd=cache, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise AptError(f"apt-get download failed: {proc.stderr.strip()[-500:]}")
    paths = []
    for d in debs:
        path = cache / d.filename
        if not path.is_file() or _sha256(path) != d.sha256:
            raise AptError(f"{path.name}: missing or not the SHA-256 apt announced; delete it and build again")
        paths.append(path)
    return paths


def unpack(deb: Deb, path: Path, root: Path, scratch: Path) -> None:
    """Unpack `path` into `root` (all of it, or the ONLY paths) and record its control fields for scanners."""
    keep = ONLY.get(deb.name)
    if keep is None:
        subprocess.run(["dpkg-deb", "-x", str(path), str(root)], check=True, capture_output=True)
    else:
        part = scratch / deb.name
        subprocess.run(["dpkg-deb", "-x", str(path), str(part)], check=True, capture_output=True)
        for rel in keep:
            src = part / rel
            if src.is_symlink() or src.exists():
                dst = root / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                src.rename(dst)
    control = subprocess.run(["dpkg-deb", "-f", str(path)], check=True, capture_output=True).stdout
    status = root / "var/lib/dpkg/status.d" / deb.name
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_bytes(control)
