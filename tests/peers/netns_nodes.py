"""Simulated cluster nodes for rollout tests: network namespaces on a private bridge, one sshd in each.

    host (root netns)                 node k (netns k3sreg-<sfx>-n<k>, private mount namespace)
    bridge krb<sfx> 10.231.X.1/24 ─── eth0 10.231.X.(10+k)/24, no default route, sshd on :22
                                      /etc      overlay (upper: <workdir>/n<k>/etc-upper)  writes stay per node
                                      /var/lib  overlay (upper: <workdir>/n<k>/varlib-upper) certs.d lives here
                                      /run, /var/log, /usr/local/sbin   tmpfs

The suffix is random and X a /24 of 10.231.0.0/16 that no interface or route on this machine uses, so two
sessions (or the shell script in ../shared/peers) never collide. Nodes run no systemd: `/usr/local/sbin/systemctl`
is a fake that appends each call to `/var/log/systemctl.calls`, answers `is-active` with `active` (unless
the service is named in `/etc/k3sreg-fake/inactive`), fails `restart` of a service named in
`/etc/k3sreg-fake/fail-restart` and hangs on one named in `/etc/k3sreg-fake/hang`. (On a real node the rollout runs
`systemctl restart <service>`.) Each node also gets the unit file of its role (`k3s.service` or
`k3s-agent.service` in /etc/systemd/system) so that detection finds it.

`cluster = NodeCluster.start(workdir, roles=("server", "agent", "agent"))` ... `cluster.stop()`, or the
session fixture `netns_nodes`. Everything is torn down: sshd processes, namespaces, veths, the bridge.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> /var/log/systemctl.calls
for unit; do :; done
case "$1" in
  is-active)
    if grep -qx "$unit" /etc/k3sreg-fake/inactive 2>/dev/null; then [ "$2" = --quiet ] || echo failed; exit 3; fi
    [ "$2" = --quiet ] || echo active ;;
  is-enabled) echo enabled ;;
  restart)
    if grep -qx "$2" /etc/k3sreg-fake/fail-restart 2>/dev/null; then echo "Job for $2 failed" >&2; exit 1; fi
    if grep -qx "$2" /etc/k3sreg-fake/hang 2>/dev/null; then exec sleep 20; fi ;;
esac
exit 0
"""


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@dataclass
class SimNode:
    """One simulated node; `pid` is its sshd, whose mount namespace is the node's filesystem view."""

    index: int
    name: str
    netns: str
    address: str
    role: str
    dir: Path
    veth: str
    pid: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def path(self, node_path: str) -> Path:
        """The host path through which `node_path` on the node can be read (and stat'ed)."""
        return Path(f"/proc/{self.pid}/root{node_path}")

    def run(self, *cmd: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `cmd` as root inside the node (its network and mount namespaces)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-n", "--", *cmd],
            check=check,
            capture_output=True,
            text=True,
            input=input,
        )

    def systemctl_calls(self) -> list[str]:
        """Every systemctl call made on the node so far, one string each (e.g. `restart k3s-agent`)."""
        f = self.path("/var/log/systemctl.calls")
        return f.read_text().splitlines() if f.exists() else []

    def restarts(self) -> list[str]:
        """The services restarted on the node so far, in order."""
        return [c.split()[1] for c in self.systemctl_calls() if c.startswith("restart ")]

    def clear_calls(self) -> None:
        """Forget the recorded systemctl calls."""
        self.path("/var/log/systemctl.calls").unlink(missing_ok=True)

    @contextlib.contextmanager
    def unplugged(self) -> Iterator[None]:
        """The node's cable pulled (host side of its veth down) for the duration of the block."""
        _sh("ip", "link", "set", self.veth, "down")
        try:
            yield
        finally:
            _sh("ip", "link", "set", self.veth, "up")

    def add_sudo_user(self, user: str) -> None:
        """Create `user` on this node only (its /etc overlay), allowed `sudo` without a password."""
        self.run("useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", user)
        # UsePAM=no makes sshd refuse a locked ('!') account even with a key.
        self.run("usermod", "-p", "*", user)
        self.run(
            "sh",
            "-c",
            f"echo '{user} ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/{user}; chmod 440 /etc/sudoers.d/{user}",
        )


@dataclass
class NodeCluster:
    """N simulated nodes, an SSH key that logs into all of them, and a known_hosts file listing their keys."""

    workdir: Path
    suffix: str
    network: ipaddress.IPv4Network
    bridge: str
    key_file: Path
    known_hosts: Path
    nodes: list[SimNode] = field(default_factory=list)

    @property
    def host_address(self) -> str:
        """This machine's address on the nodes' bridge (reachable from every node)."""
        return str(self.network.network_address + 1)

    @classmethod
    def start(cls, workdir: Path, roles: Sequence[str] = ("server", "agent", "agent")) -> NodeCluster:
        """Bring up one node per entry of `roles`; on any failure, tear down what was made and re-raise."""
        suffix = secrets.token_hex(3)
        cluster = cls(workdir, suffix, _free_subnet(), f"krb{suffix}", workdir / "id_ed25519", workdir / "known_hosts")
        try:
            cluster._up(roles)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _up(self, roles: Sequence[str]) -> None:
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k3sreg-test", "-f", str(self.key_file))
        (self.workdir / "authorized_keys").write_text(Path(f"{self.key_file}.pub").read_text())
        # sshd reads authorized_keys as the user logging in: a non-root test user must be able to reach it.
        self.workdir.chmod(0o755)
        (self.workdir / "authorized_keys").chmod(0o644)
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        known = []
        for k, role in enumerate(roles, 1):
            node = SimNode(
                k,
                f"n{k}",
                f"k3sreg-{self.suffix}-n{k}",
                str(self.network.network_address + 10 + k),
                role,
                self.workdir / f"n{k}",
                f"kr{self.suffix}n{k}h",
            )
            self.nodes.append(node)
            for sub in ("etc-upper", "etc-work", "varlib-upper", "varlib-work"):
                (node.dir / sub).mkdir(parents=True)
            hostkey = node.dir / "ssh_host_ed25519_key"
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
            known.append(f"{node.address} {' '.join(Path(f'{hostkey}.pub').read_text().split()[:2])}\n")
            _sh("ip", "netns", "add", node.netns)
            _sh("ip", "link", "add", node.veth, "type", "veth", "peer", "name", f"kr{self.suffix}n{k}c")
            _sh("ip", "link", "set", node.veth, "master", self.bridge, "up")
            _sh("ip", "link", "set", f"kr{self.suffix}n{k}c", "netns", node.netns)
            _sh("ip", "-n", node.netns, "link", "set", f"kr{self.suffix}n{k}c", "name", "eth0")
            _sh("ip", "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0")
            _sh("ip", "-n", node.netns, "link", "set", "eth0", "up")
            _sh("ip", "-n", node.netns, "link", "set", "lo", "up")
            self._start_sshd(node, hostkey)
        self.known_hosts.write_text("".join(known))
        for node in self.nodes:
            _wait_port(node.address, 22, node)

    def _start_sshd(self, node: SimNode, hostkey: Path) -> None:
        config = node.dir / "sshd_config"
        config.write_text(
            f"ListenAddress {node.address}\nPort 22\nHostKey {hostkey}\nPidFile none\n"
            "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
            "PrintMotd no\nPrintLastLog no\n"
        )
        unit = "k3s.service" if node.role == "server" else "k3s-agent.service"
        (node.dir / "systemctl").write_text(FAKE_SYSTEMCTL)
        setup = f"""set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir={node.dir}/etc-upper,workdir={node.dir}/etc-work /etc
mount -t overlay overlay -o lowerdir=/var/lib,upperdir={node.dir}/varlib-upper,workdir={node.dir}/varlib-work /var/lib
sed -i 's/^root:[!*]*:/root:*:/' /etc/shadow
echo {node.name} > /etc/hostname
mkdir -p /etc/systemd/system /etc/k3sreg-fake
printf '[Unit]\\nDescription=fake {unit}\\n' > /etc/systemd/system/{unit}
mount -t tmpfs tmpfs /run; mkdir -p /run/sshd; chmod 755 /run/sshd
mount -t tmpfs tmpfs /var/log
mount -t tmpfs tmpfs /usr/local/sbin
install -m 755 {node.dir}/systemctl /usr/local/sbin/systemctl
exec {SSHD} -D -e -f {config}
"""
        log = (node.dir / "sshd.log").open("wb")
        node.proc = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{node.netns}",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                setup,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        node.pid = node.proc.pid

    def inventory(self, path: Path | None = None, **overrides: object) -> Path:
        """Write our YAML inventory of the nodes (roles as started; `overrides` go under `defaults`)."""
        import yaml

        path = path or self.workdir / "inventory.yaml"
        defaults = {"user": "root", "key_file": str(self.key_file), **overrides}
        nodes = [{"name": n.name, "address": n.address, "role": n.role} for n in self.nodes]
        path.write_text(yaml.safe_dump({"defaults": defaults, "nodes": nodes}, sort_keys=False))
        return path

    def stop(self) -> None:
        """Stop every sshd, delete namespaces, veths and the bridge; leaves no trace but `workdir`."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
                try:
                    node.proc.wait(5)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
        for node in self.nodes:
            pids = _sh("ip", "netns", "pids", node.netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            _sh("ip", "netns", "del", node.netns, check=False)
            _sh("ip", "link", "del", node.veth, check=False)
        _sh("ip", "link", "del", self.bridge, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _sh("ip", "-4", "-o", "addr").stdout + _sh("ip", "-4", "route").stdout
    for _ in range(200):
        third = 100 + secrets.randbelow(150)
        if f"10.231.{third}." not in used:
            return ipaddress.IPv4Network(f"10.231.{third}.0/24")
    raise RuntimeError("no free 10.231.X.0/24 subnet")


def _wait_port(address: str, port: int, node: SimNode, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.proc is not None and node.proc.poll() is not None:
            raise RuntimeError(f"sshd of {node.name} exited: {(node.dir / 'sshd.log').read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd of {node.name} not listening on {address}:{port}")


@contextlib.contextmanager
def node_cluster(roles: Sequence[str] = ("server", "agent", "agent")) -> Iterator[NodeCluster]:
    """A `NodeCluster` in a fresh temporary directory, torn down (and the directory removed) on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="k3sreg-nodes-"))
    try:
        cluster = NodeCluster.start(workdir, roles)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def netns_nodes() -> Iterator[NodeCluster]:
    """Three nodes (a server and two agents) for the whole session."""
    with node_cluster(("server", "agent", "agent")) as cluster:
        yield cluster
