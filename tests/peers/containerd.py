"""A private containerd for tests, optionally inside an isolated network namespace, and its ``ctr`` client.

API:
  ``Containerd(workdir, netns=None, cri_hosts_dir=None)``, a context manager (or ``start()``/``stop()``):
    * own root, state, opt dir, grpc socket and config.toml under ``workdir`` (never touches the system's);
    * the CRI plugin is disabled, unless ``cri_hosts_dir`` is given: then it runs with
      ``restrict_oom_score_adj = true`` (no CAP_SYS_RESOURCE here) and
      ``registry.config_path = cri_hosts_dir``;
    * ``netns``: a ``tests.peers.netns.NetNs``; containerd AND every ``ctr`` call run inside it, because
      ``ctr images pull`` fetches from the client process, not from the daemon;
    * ``pull(ref, hosts_dir, platform=None, all_platforms=False, extra=())``: ``ctr images pull --hosts-dir``
      (native snapshotter, so no mounts are left); raises ``CtrError`` (with ctr's stderr) when it fails;
    * ``images() -> dict[str, str]``: image name -> target digest; ``ctr(*args)`` runs any ctr command;
    * ``socket``, ``log_text()``.
  ``write_hosts_toml(hosts_dir, registry, server, hosts=())`` writes ``hosts_dir/<registry>/hosts.toml``
  (always with a ``[host]`` table: containerd 1.6 ignores a file without one and falls back to the
  public host).
  ``network_namespace`` / ``NetNs`` are re-exported from ``tests.peers.netns``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import tomli_w

from tests.peers.netns import NetNs, network_namespace
from tests.peers.process import end_group

__all__ = ["Containerd", "CtrError", "HostEntry", "NetNs", "network_namespace", "write_hosts_toml"]


class CtrError(RuntimeError):
    """A ``ctr`` command failed; the message carries its command line and stderr."""


@dataclass(frozen=True)
class HostEntry:
    """One ``[host."URL"]`` table of hosts.toml."""

    url: str
    capabilities: tuple[str, ...] = ("pull", "resolve")
    skip_verify: bool = False
    ca: str | None = None
    override_path: bool = False
    client: tuple[str, str] | None = None  # (certificate, key) for mTLS


def write_hosts_toml(hosts_dir: Path, registry: str, server: str, hosts: Sequence[HostEntry] = ()) -> Path:
    """Write ``hosts_dir/<registry>/hosts.toml`` with ``server`` and the mirror ``hosts`` in order."""
    tables: dict[str, Any] = {}
    for entry in hosts:
        table: dict[str, Any] = {"capabilities": list(entry.capabilities)}
        if entry.skip_verify:
            table["skip_verify"] = True
        if entry.ca:
            table["ca"] = entry.ca
        if entry.override_path:
            table["override_path"] = True
        if entry.client:
            table["client"] = [list(entry.client)]
        tables[entry.url] = table
    if not tables:
        # An empty [host] stub, as K3s writes: without any [host] table containerd 1.6 voids the file.
        tables[server] = {"capabilities": ["pull", "resolve"]}
    doc = {"server": server, "host": tables}
    path = hosts_dir / registry / "hosts.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc))
    return path


class Containerd:
    """A containerd daemon with every path private to ``workdir``."""

    def __init__(self, workdir: Path, netns: NetNs | None = None, cri_hosts_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.netns = netns
        self.cri_hosts_dir = cri_hosts_dir
        self.socket = workdir / "containerd.sock"
        self.config_path = workdir / "config.toml"
        self.log_path = workdir / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> dict[str, Any]:
        plugins: dict[str, Any] = {"io.containerd.internal.v1.opt": {"path": str(self.workdir / "opt")}}
        config: dict[str, Any] = {
            "version": 2,
            "root": str(self.workdir / "root"),
            "state": str(self.workdir / "state"),
            "grpc": {"address": str(self.socket)},
            "ttrpc": {"address": str(self.workdir / "containerd.sock.ttrpc")},
            "plugins": plugins,
        }
        if self.cri_hosts_dir is None:
            config["disabled_plugins"] = ["io.containerd.grpc.v1.cri"]
        else:
            plugins["io.containerd.grpc.v1.cri"] = {
                "restrict_oom_score_adj": True,
                "registry": {"config_path": str(self.cri_hosts_dir)},
            }
        return config

    def start(self, timeout: float = 20.0) -> Self:
        """Write config.toml, start containerd and wait until ``ctr version`` answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(tomli_w.dumps(self._config()))
        cmd = ["containerd", "--config", str(self.config_path)]
        if self.netns:
            cmd = self.netns.wrap(cmd)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if self.socket.exists() and self._run(["version"], check=False).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"containerd did not answer within {timeout}s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; unmounts anything left under ``workdir``; idempotent."""
        if self.proc is not None:
            end_group(self.proc)
            self.proc = None
        for mount_point in self._mounts_below():
            subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)

    def _mounts_below(self) -> list[str]:
        prefix = str(self.workdir.resolve()) + "/"
        points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        # Deepest first, so nested mounts come off before their parents.
        return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)

    def _run(self, args: Sequence[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = ["ctr", "--address", str(self.socket), *args]
        if self.netns:
            cmd = self.netns.wrap(cmd)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise CtrError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``ctr --address SOCK ARGS...`` (inside the namespace if any); raise CtrError on failure."""
        return self._run(args)

    def pull(
        self,
        ref: str,
        hosts_dir: Path,
        platform: str | None = None,
        all_platforms: bool = False,
        extra: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """``ctr images pull --hosts-dir DIR ref`` with the native snapshotter; raise CtrError on failure."""
        args = ["images", "pull", "--hosts-dir", str(hosts_dir), "--snapshotter", "native"]
        if platform:
            args += ["--platform", platform]
        if all_platforms:
            args.append("--all-platforms")
        return self._run([*args, *extra, ref])

    def images(self) -> dict[str, str]:
        """Image name -> target digest, as ``ctr images ls`` lists them."""
        out = self._run(["images", "ls"]).stdout.splitlines()
        result: dict[str, str] = {}
        for line in out[1:]:
            cols = line.split()
            if len(cols) >= 3:
                result[cols[0]] = cols[2]
        return result

    def log_text(self) -> str:
        """What containerd wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
