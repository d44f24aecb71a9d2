"""SSH to one node with asyncssh: host keys checked against known_hosts, keys from files or the agent.

A host whose key differs from its known_hosts entry is refused, always. A host with no entry is refused unless
`accept_new_host_keys` is set; then its key is appended to known_hosts (as `ssh -o
StrictHostKeyChecking=accept-new` does). Every connection and command has a timeout, and every failure comes
out as `NodeError` with a reason meant for the summary table.
"""

from __future__ import annotations

import asyncio
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncssh

from k3sreg.errors import K3sregError
from k3sreg.k3s.rollout.model import Node

TIMEOUT_STATUS = 124  # what coreutils `timeout` exits with when it had to stop the command


class NodeError(K3sregError):
    """One node could not be handled; `reason` says why in a few words."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class SshOptions:
    """How to reach nodes: known_hosts file, default key, timeouts (seconds)."""

    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    accept_new_host_keys: bool = False
    identity: str | None = None  # used for nodes whose inventory entry names no key_file
    use_agent: bool = True
    connect_timeout: float = 10.0
    command_timeout: float = 60.0


@dataclass(frozen=True)
class Completed:
    """A finished remote command."""

    status: int
    stdout: bytes
    stderr: bytes

    def why(self) -> str:
        """The last line of stderr, or the exit status: the reason to show when the command failed."""
        lines = [line for line in self.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit status {self.status}"


class _HostKeyCheck(asyncssh.SSHClient):
    """Decides on keys that known_hosts does not already trust: refuse a changed key, maybe accept a new one."""

    def __init__(self, node: Node, options: SshOptions):
        self.node = node
        self.options = options
        self.refusal: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        known = self._known_entries(host, addr, port)
        if known:
            self.refusal = (f"host key mismatch: {key.get_fingerprint()} is not the key known_hosts has for "
                            f"{self.node.address} (possible man-in-the-middle)")
            return False
        if not self.options.accept_new_host_keys:
            self.refusal = (f"unknown host key {key.get_fingerprint()}: not in {self.options.known_hosts} "
                            "(pass --accept-new-host-keys to trust it)")
            return False
        _append_known_host(self.options.known_hosts, self.node.address, self.node.port, key)
        return True

    def _known_entries(self, host: str, addr: str, port: int) -> list[Any]:
        path = self.options.known_hosts
        if not path.is_file():
            return []
        matched = asyncssh.read_known_hosts(str(path)).match(host, addr, port if port != 22 else None)
        # match() gives (host keys, CA keys, revoked keys, ...): any trusted key means the host is known.
        return list(matched[0]) + list(matched[1])


def _append_known_host(path: Path, address: str, port: int, key: asyncssh.SSHKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    host = address if port == 22 else f"[{address}]:{port}"
    line = f"{host} {key.export_public_key('openssh').decode().strip()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line)


class NodeShell:
    """An open SSH session to one node that runs shell scripts as root (through `sudo -n` when configured)."""

    def __init__(self, node: Node, options: SshOptions):
        self.node = node
        self.options = options
        self._conn: asyncssh.SSHClientConnection | None = None

    async def __aenter__(self) -> NodeShell:
        await self.connect()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection; NodeError names the cause (timeout, refused, host key, authentication)."""
        node, opts = self.node, self.options
        key_file = node.key_file or opts.identity
        checker = _HostKeyCheck(node, opts)
        kwargs: dict[str, Any] = {
            "port": node.port,
            "username": node.user,
            "known_hosts": str(opts.known_hosts) if opts.known_hosts.is_file() else b"",
            "client_factory": lambda: checker,
            "connect_timeout": opts.connect_timeout,
            "login_timeout": opts.connect_timeout,
            "agent_path": None if not opts.use_agent else (os.environ.get("SSH_AUTH_SOCK") or None),
            "config": [],  # ~/.ssh/config must not silently change which host or key is used
        }
        if key_file:
            kwargs["client_keys"] = [os.path.expanduser(key_file)]
        try:
            self._conn = await asyncssh.connect(node.address, **kwargs)
        except asyncssh.HostKeyNotVerifiable as e:
            raise NodeError(checker.refusal or f"host key not verifiable: {e.reason}") from e
        except asyncssh.PermissionDenied as e:
            raise NodeError(f"authentication failed for {node.user}: {e.reason}") from e
        except asyncssh.DisconnectError as e:
            raise NodeError(f"ssh refused: {checker.refusal or e.reason}") from e
        except TimeoutError as e:
            raise NodeError(f"cannot connect to {node.address}:{node.port}: timed out after "
                            f"{opts.connect_timeout:g}s") from e
        except OSError as e:
            raise NodeError(f"cannot connect to {node.address}:{node.port}: {e.strerror or e}") from e
        except (asyncssh.Error, ValueError) as e:
            raise NodeError(f"ssh failed: {e}") from e

    @property
    def connection(self) -> asyncssh.SSHClientConnection:
        """The open connection, for what runs beside the scripts (doctor's port forwards); NodeError when closed."""
        if self._conn is None:
            raise NodeError("not connected")
        return self._conn

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None

    async def script(self, text: str, timeout: float | None = None) -> Completed:
        """Run the POSIX shell `text` as root; NodeError on a timeout or a lost connection, not on a status."""
        if self._conn is None:
            raise NodeError("not connected")
        limit = timeout or self.options.command_timeout
        command = remote_command(math.ceil(limit), self.node.sudo)
        try:
            # The node enforces the limit itself (see remote_command); this one only guards a silent link.
            result = await asyncio.wait_for(
                self._conn.run(command, input=text.encode(), encoding=None, check=False), limit + 10
            )
        except TimeoutError as e:
            raise NodeError(f"command timed out after {limit:g}s") from e
        except (asyncssh.Error, OSError) as e:
            raise NodeError(f"connection lost: {e}") from e
        status = result.exit_status if result.exit_status is not None else 255
        if status == TIMEOUT_STATUS:
            raise NodeError(f"command timed out after {math.ceil(limit)}s")
        stderr = _as_bytes(result.stderr)
        if self.node.sudo and status != 0 and b"sudo:" in stderr and b"password" in stderr:
            raise NodeError(f"sudo needs a password for {self.node.user}; allow NOPASSWD or log in as root")
        return Completed(status, _as_bytes(result.stdout), stderr)

    async def must(self, text: str, what: str, timeout: float | None = None) -> Completed:
        """Run `text` and raise NodeError('<what>: <stderr>') unless it exits 0."""
        done = await self.script(text, timeout)
        if done.status != 0:
            raise NodeError(f"{what}: {done.why()}")
        return done


def remote_command(limit: int, sudo: bool) -> str:
    """The command line that runs a script from stdin as root for at most `limit` seconds.

    Closing an SSH channel does not stop what it started, so a hung `systemctl restart` would outlive our
    timeout and act later; coreutils `timeout` kills the script's whole process group on the node instead
    (exit status 124). Where `timeout` is missing, the script runs without a limit on the node.
    """
    inner = f"if command -v timeout >/dev/null 2>&1; then exec timeout {limit} sh -s; else exec sh -s; fi"
    return f"sudo -n -- sh -c {shlex.quote(inner)}" if sudo else inner


def _as_bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    return data if isinstance(data, bytes) else data.encode()
