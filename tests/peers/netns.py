"""Isolated network namespaces for tests: only loopback up, no route out, deleted on exit.

API:
  ``with network_namespace() as ns:`` creates ``/run/netns/<unique name>`` with ``lo`` up and yields a
  ``NetNs``:
    * ``ns.name``, ``ns.path``;
    * ``ns.wrap(cmd) -> list[str]``: the command prefixed with ``nsenter --net=PATH`` (never
      ``ip netns exec``, which remounts /sys and breaks runc);
    * ``ns.call(fn, *args)``: runs ``fn`` in a thread that joined the namespace (sockets it opens live
      there) and returns its result, so Python code can reach a server listening on the namespace's 127.0.0.1.
  Processes started inside must be stopped by their owner before the block ends.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class NetNs:
    """A named network namespace created by ``network_namespace``."""

    name: str

    @property
    def path(self) -> str:
        """The bind-mounted namespace file."""
        return f"/run/netns/{self.name}"

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` run inside this namespace (nsenter execs it: the pid is the command's own)."""
        return ["nsenter", f"--net={self.path}", *cmd]

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a fresh thread that entered this namespace; re-raise what it raises."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                _enter(self.path)
                box["result"] = fn(*args)
            except BaseException as exc:
                box["error"] = exc

        # setns affects only the calling thread, so a throwaway thread keeps the test's own thread outside.
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        result: T = box["result"]
        return result


def _enter(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


@contextmanager
def network_namespace(prefix: str = "k3sreg-t") -> Iterator[NetNs]:
    """A new namespace with only loopback up; deleted on exit even when the block fails."""
    ns = NetNs(f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", ns.name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", ns.name], check=False, capture_output=True)
