"""Thin wrappers around skopeo, podman and buildah for tests: plain HTTP, private storage, errors with stderr.

API:
  ``Skopeo(netns=None)``: every call passes ``--tls-verify=false`` (or the src/dest variants) and raises
  ``ToolError`` with the command and its stderr when it fails:
    * ``copy(src, dst, all=False, extra=())``: transports included (``oci:DIR:TAG``, ``docker://HOST/REPO:TAG``);
    * ``inspect(ref) -> dict`` (``skopeo inspect``), ``raw_manifest(ref) -> bytes`` (``inspect --raw``);
    * ``list_tags(ref) -> list[str]`` (``docker://HOST/REPO``), ``delete(ref)``;
    * ``sync(src, dst, src_transport="docker", dst_transport="docker", all=False, scoped=False)``.
  ``Podman(workdir)`` and ``Buildah(workdir)``: ``--storage-driver vfs`` with a private ``--root`` under
  ``workdir`` (``--runroot`` a short dir in /tmp) and an empty registries.conf (no short-name lookups, nothing
  leaves the machine):
    * ``Podman.pull(ref)``, ``push(local, dest)`` (dest without transport is ``docker://``), ``tag(a, b)``,
      ``image_digest(ref)`` (the repo digest of a pulled image), ``run(*args)``, ``run_input(stdin, *args)``;
    * ``Buildah.from_scratch() -> container``, ``copy(container, src, dest)``, ``config(container, *args)``,
      ``commit(container, image)``, ``push(image, dest, extra=())``, ``run(*args)``.
  Use ``.cleanup()`` (or the context manager) to drop the private storage; vfs leaves no mounts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.peers.netns import NetNs


class ToolError(RuntimeError):
    """A client program failed; the message carries the command and its stderr."""


def _run(
    cmd: list[str], netns: NetNs | None = None, env: dict[str, str] | None = None, timeout: float = 120,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    if netns:
        cmd = netns.wrap(cmd)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False, input=stdin)
    if proc.returncode != 0:
        raise ToolError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


class Skopeo:
    """skopeo with TLS verification off (the registries under test speak plain HTTP)."""

    def __init__(self, netns: NetNs | None = None) -> None:
        self.netns = netns

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``skopeo ARGS...``; raise ToolError on failure."""
        return _run(["skopeo", *args], self.netns)

    def copy(self, src: str, dst: str, all: bool = False, extra: Sequence[str] = ()) -> None:
        """Copy an image between two transport references (``--all`` copies every platform of an index)."""
        flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
        if all:
            flags.append("--all")
        self.run("copy", *flags, *extra, src, dst)

    def inspect(self, ref: str) -> dict[str, Any]:
        """``skopeo inspect`` as a dict (Digest, RepoTags, Architecture, ...)."""
        out: dict[str, Any] = json.loads(self.run("inspect", "--tls-verify=false", ref).stdout)
        return out

    def raw_manifest(self, ref: str) -> bytes:
        """The manifest bytes exactly as the registry serves them."""
        proc = subprocess.run(
            (self.netns.wrap if self.netns else list)(["skopeo", "inspect", "--raw", "--tls-verify=false", ref]),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise ToolError(f"skopeo inspect --raw {ref} failed:\n{proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def list_tags(self, ref: str) -> list[str]:
        """Tags of the repository ``docker://HOST/REPO``."""
        tags: list[str] = json.loads(self.run("list-tags", "--tls-verify=false", ref).stdout)["Tags"]
        return tags

    def delete(self, ref: str) -> None:
        """Delete the manifest ``ref`` points at (by tag or digest)."""
        self.run("delete", "--tls-verify=false", ref)

    def sync(
        self,
        src: str,
        dst: str,
        src_transport: str = "docker",
        dst_transport: str = "docker",
        all: bool = False,
        scoped: bool = False,
    ) -> None:
        """``skopeo sync --src T --dest T SRC DST`` (``--scoped`` keeps the source host in the path)."""
        flags = [
            "--src",
            src_transport,
            "--dest",
            dst_transport,
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ]
        if all:
            flags.append("--all")
        if scoped:
            flags.append("--scoped")
        self.run("sync", *flags, src, dst)


class _Containers:
    """Private containers/storage (vfs) shared by the podman and buildah wrappers."""

    program = ""

    def __init__(self, workdir: Path, netns: NetNs | None = None) -> None:
        self.workdir = workdir
        self.netns = netns
        workdir.mkdir(parents=True, exist_ok=True)
        # podman refuses a runroot longer than 50 characters, so it cannot live under a pytest tmp_path.
        self.runroot = Path(tempfile.mkdtemp(prefix=f"{self.program}-", dir="/tmp"))
        registries = workdir / "registries.conf"
        registries.write_text("unqualified-search-registries = []\n")
        (workdir / "tmp").mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "TMPDIR": str(workdir / "tmp"),
            # No credentials of the host user leak into the test.
            "REGISTRY_AUTH_FILE": str(workdir / "auth.json"),
        }
        (workdir / "auth.json").write_text('{"auths": {}}')

    def base_args(self) -> list[str]:
        """Storage flags common to podman and buildah."""
        return [
            "--root",
            str(self.workdir / "root"),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            "vfs",
        ]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the program with the private storage; raise ToolError on failure."""
        return _run([self.program, *self.base_args(), *args], self.netns, self.env)

    def run_input(self, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`run`, with `stdin` as the program's standard input (a password for `login --password-stdin`)."""
        return _run([self.program, *self.base_args(), *args], self.netns, self.env, stdin=stdin)

    def cleanup(self) -> None:
        """Remove the private storage."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def _docker(dest: str) -> str:
    return dest if "://" in dest or dest.startswith(("oci:", "docker-archive:", "dir:")) else f"docker://{dest}"


class Podman(_Containers):
    """podman with vfs storage under ``workdir`` and its events in a file (no journald here)."""

    program = "podman"

    def base_args(self) -> list[str]:
        """Storage flags plus a file events backend and cgroupfs, which need no systemd."""
        return [
            *super().base_args(),
            "--events-backend",
            "file",
            "--cgroup-manager",
            "cgroupfs",
            "--tmpdir",
            str(self.workdir / "tmp"),
        ]

    def pull(self, ref: str) -> None:
        """``podman pull --tls-verify=false ref`` (ref without transport: a registry)."""
        self.run("pull", "--tls-verify=false", "--quiet", ref)

    def push(self, local: str, dest: str) -> None:
        """Push local image ``local`` to ``dest`` (``HOST/REPO:TAG`` or a transport reference)."""
        self.run("push", "--tls-verify=false", "--quiet", local, _docker(dest))

    def tag(self, src: str, dst: str) -> None:
        """Give local image ``src`` the extra name ``dst``."""
        self.run("tag", src, dst)

    def image_digest(self, ref: str) -> str:
        """The manifest digest podman recorded for ``ref`` when it pulled or pushed it."""
        return self.run("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()


class Buildah(_Containers):
    """buildah with vfs storage under ``workdir``."""

    program = "buildah"

    def from_scratch(self) -> str:
        """A new working container from ``scratch``; returns its name."""
        return self.run("from", "scratch").stdout.strip()

    def copy(self, container: str, src: Path, dest: str) -> None:
        """Copy a host file or directory into the working container."""
        self.run("copy", container, str(src), dest)

    def config(self, container: str, *args: str) -> None:
        """``buildah config ARGS... container`` (e.g. ``--cmd``, ``--label``)."""
        self.run("config", *args, container)

    def commit(self, container: str, image: str) -> str:
        """Commit the container to local image ``image``; returns the image id."""
        return self.run("commit", "--quiet", container, image).stdout.strip()

    def push(self, image: str, dest: str, extra: Sequence[str] = ()) -> None:
        """Push local ``image`` to ``dest`` (``HOST/REPO:TAG`` or a transport reference)."""
        self.run("push", "--tls-verify=false", "--quiet", *extra, image, _docker(dest))
