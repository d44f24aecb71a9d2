"""Processes: free ports, starting a server and waiting for it, its process tree and its memory.

Memory comes from `/proc/<pid>/status`: `VmHWM` is the kernel's own peak resident set of one process, so a
reading after a phase is that process's peak over its whole life so far, with no sampling gaps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


def with_bytecode_cache() -> dict[str, str]:
    """This environment without PYTHONDONTWRITEBYTECODE: a k3sreg command then runs with its bytecode cache, as
    every run after a user's first does (without it, each start compiles ~60 modules first)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


@dataclass
class Proc:
    """One launched server process (the root of its tree), with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The pid of the launched (root) process."""
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's log, for error messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def exit_status(self) -> int | None:
        """The exit code (a negative signal number if killed) once the process has exited, else None.

        The process is not reaped, so stop() can still sweep its group safely.
        """
        if self.popen.returncode is not None:
            return self.popen.returncode
        try:
            info = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.popen.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers, sweep leftover workers; idempotent.

        Signals go to the group only while its leader is not yet reaped (alive or a zombie): until then the
        kernel cannot hand its pid, our group id, to another process, so no one else's processes are hit.
        """
        pid = self.popen.pid
        if self.popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        if not _exited_unreaped(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _exited_unreaped(pid, timeout)
        # Workers that outlived their parent are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.popen.wait()


def _exited_unreaped(pid: int, timeout: float) -> bool:
    """Wait up to timeout for child pid to exit, leaving it unreaped (a zombie keeps its pid reserved)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def launch(name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start argv in its own process group (so stop() reaches every worker), output to log."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    return Proc(name, popen, log)


def wait_http(proc: Proc, url: str, timeout: float = 30.0) -> None:
    """Poll url until it answers any HTTP status below 500; raise StartError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        code = proc.exit_status()
        if code is not None:
            raise StartError(f"{proc.name} exited with {code}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last = f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise StartError(f"{proc.name} did not answer {url} in {timeout:.0f}s ({last}):\n{proc.log_tail()}")


def process_tree(root: int) -> list[int]:
    """root and all its live descendants, found by scanning /proc for parent pids."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields resume after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmHWM, VmRSS), 0 when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Memory:
    """Peak resident memory of a server's process tree: the largest single process and the sum, in MiB."""

    per_process_max: float
    total: float
    processes: int


def peak_memory(root: int) -> Memory:
    """VmHWM of every process in root's tree, as the largest one and the sum."""
    peaks = [status_kib(pid, "VmHWM") / 1024 for pid in process_tree(root)]
    return Memory(max(peaks, default=0.0), sum(peaks), len(peaks))


def cpu_seconds(root: int) -> float:
    """User + system CPU time consumed so far by root's process tree (all threads), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # After the command name: state is field 3, utime and stime are fields 14 and 15 of stat(5).
        total += int(fields[11]) + int(fields[12])
    return total / ticks
