"""Where the network checks look from: this machine, or a node reached over SSH.

A check must see what the node sees: `127.0.0.1:30500` is the node's own NodePort, `registry.lan` is whatever
the node's /etc/hosts says. Over SSH nothing is installed on the node; connections leave from it through the
SSH connection (direct-tcpip, as `ssh -L` does), so sshd on the node resolves the name and connects:

    connect(host, port)   one connection attempt from the node; the reason of a failure as sshd gives it
    route(host, port)     a local address that reaches host:port from the node (an SSH forward, made once),
                          for TLS handshakes and HTTP; certificates are still checked against `host`
    session()             an aiohttp session whose every connection goes through `route`

Locally `route` is the identity and the session is an ordinary one.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

import aiohttp
import asyncssh
from aiohttp.abc import ResolveResult


class Vantage(Protocol):
    """A place the network checks run from."""

    async def connect(self, host: str, port: int, timeout: float) -> str | None:
        """Open and close one TCP connection to host:port; None on success, else why it failed."""
        ...

    async def route(self, host: str, port: int) -> tuple[str, int]:
        """The (address, port) to connect to here in order to reach host:port from the vantage point."""
        ...

    def session(self) -> aiohttp.ClientSession:
        """A new HTTP session (the caller closes it) whose connections leave from the vantage point."""
        ...

    async def close(self) -> None:
        """Release what the vantage point holds (forwards)."""
        ...


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"name does not resolve ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Local:
    """This machine."""

    async def connect(self, host: str, port: int, timeout: float) -> str | None:
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as e:
            return _why(e)
        writer.close()
        return None

    async def route(self, host: str, port: int) -> tuple[str, int]:
        return host, port

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(trust_env=False)

    async def close(self) -> None:
        return None


class _Routed(aiohttp.TCPConnector):
    """Connects every request through `route`; TLS is still verified against the URL's host.

    aiohttp takes an IP literal as its own address without asking a resolver, so the hook is the connector's
    `_resolve_host` (aiohttp is pinned in uv.lock; tests/unit/doctor exercises this against the pinned version).
    """

    def __init__(self, vantage: Vantage, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._vantage = vantage

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[ResolveResult]:
        address, local_port = await self._vantage.route(host, port)
        return [{"hostname": host, "host": address, "port": local_port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]


class OverSsh:
    """A node, through an open SSH connection (the caller keeps and closes the connection)."""

    def __init__(self, connection: asyncssh.SSHClientConnection) -> None:
        self._conn = connection
        self._forwards: dict[tuple[str, int], asyncssh.SSHListener] = {}
        self._lock = asyncio.Lock()

    async def connect(self, host: str, port: int, timeout: float) -> str | None:
        try:
            async with asyncio.timeout(timeout):
                _, writer = await self._conn.open_connection(host, port)
        except asyncssh.ChannelOpenError as e:
            reason = e.reason or "open failed"
            # OpenSSH says "open failed" when connect() failed with no more detail (no route, unreachable).
            return "no route to it" if reason == "open failed" else reason
        except TimeoutError:
            return "timed out"
        except (asyncssh.Error, OSError) as e:
            return f"the SSH connection failed: {e}"
        writer.close()
        return None

    async def route(self, host: str, port: int) -> tuple[str, int]:
        async with self._lock:
            listener = self._forwards.get((host, port))
            if listener is None:
                listener = await self._conn.forward_local_port("127.0.0.1", 0, host, port)
                self._forwards[(host, port)] = listener
        return "127.0.0.1", listener.get_port()

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=_Routed(self, force_close=True), trust_env=False)

    async def close(self) -> None:
        for listener in self._forwards.values():
            listener.close()
        self._forwards.clear()
