"""Launchers for the registries under test: Docker Distribution 2.8.2 and ``k3sreg serve``, with the same API.

API (both classes share it; use them as context managers or call ``start()``/``stop()``):
  ``DockerRegistry(workdir, root=None, config=None, netns=None, tls=None, bind="127.0.0.1")``
  ``K3sregServer(workdir, root=None, config=None, netns=None, tls=None, workers=1, bind="127.0.0.1")``
    * ``workdir``: a private directory for config.yml and the process log; ``root`` (default ``workdir/data``)
      is ``storage.filesystem.rootdirectory``, so a second instance given the same ``root`` serves the
      same data.
    * ``config``: a dict deep-merged over the base config (127.0.0.1:<free port>, access log on,
      deletes enabled), e.g. ``{"proxy": {"remoteurl": up.url}}`` or ``{"auth": {...}}``.
    * ``netns``: a ``tests.peers.netns.NetNs``; the registry then listens on that namespace's loopback.
    * ``tls``: ``(cert, key)`` paths (``write_self_signed(dir)`` makes a pair); the URL becomes https.
      Set ``client_cert = (cert, key)`` before ``start()`` when the server asks clients for certificates.
    * ``bind``: the address to listen on (another address of this machine, such as the bridge of the
      namespace nodes, so that they reach it); ``host`` and ``url`` use it.
    * ``start(timeout=20)`` returns once ``GET /v2/`` answers (200 or 401), moving to a fresh port if the
      chosen one was taken meanwhile; ``stop()`` = SIGTERM then SIGKILL;
      ``kill(signal.SIGKILL)`` kills the whole process group (every worker) at once and reaps it;
      ``signal_main(sig)`` signals the main process only (as Kubernetes signals a container's PID 1), and
      ``wait_exit(timeout)`` then waits for it, reaps the group and returns the exit status;
      ``restart()`` starts again on the same port, config and root.
    * ``url`` (``http://BIND:PORT``), ``host`` (``BIND:PORT``), ``port``, ``root``, ``impl``
      (``"docker-registry"`` or ``"k3sreg"``), ``config_path``, ``log_path``.
    * ``requests() -> list[tuple[str, str]]``: (method, path with query) of each access-log line so far;
      ``wait_request(pred, timeout)`` waits until one matches (logs are written just after the response);
      ``wait_for(method, path)`` waits for that exact request (both take ``since=len(requests())`` taken
      before an action, to ignore older lines).
    * ``log_text()``: everything the process wrote.
  ``make_registry(impl, workdir, **kw)`` picks the class by its ``impl`` name; ``IMPLS`` lists both.
  ``make_variant(variant, workdir, **kw)``: the same for a key of ``VARIANTS`` (``docker-registry``, ``k3sreg``,
  ``k3sreg-w2`` = two workers).
  ``free_port()``: a port that was free on 127.0.0.1 a moment ago.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import yaml

from tests.peers.netns import NetNs
from tests.peers.process import end_group

REPO_ROOT = Path(__file__).resolve().parents[2]
K3SREG_BIN = REPO_ROOT / ".venv" / "bin" / "k3sreg"
DOCKER_REGISTRY_BIN = "/usr/bin/docker-registry"
IMPLS = ("docker-registry", "k3sreg")
# Test ids -> (implementation, extra constructor arguments): k3sreg also with two workers sharing the port.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "docker-registry": ("docker-registry", {}),
    "k3sreg": ("k3sreg", {}),
    "k3sreg-w2": ("k3sreg", {"workers": 2}),
}
# Both Distribution's combined log format and aiohttp's default quote the request line: "GET /v2/ HTTP/1.1".
_REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/\d(?:\.\d)?"')


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 when asked."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``over``, merging nested dicts instead of replacing them."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def write_self_signed(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[Path, Path]:
    """Write a self-signed certificate and key for ``hosts`` into ``directory``; return (cert, key) paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class RegistryProcess:
    """A registry server process on 127.0.0.1:<free port> with a Distribution-style config.yml."""

    impl: ClassVar[str] = ""

    def __init__(
        self,
        workdir: Path,
        root: Path | None = None,
        config: dict[str, Any] | None = None,
        netns: NetNs | None = None,
        tls: tuple[Path, Path] | None = None,
        bind: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.bind = bind
        workdir.mkdir(parents=True, exist_ok=True)
        self.root = root or workdir / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        self.netns = netns
        self.tls = tls
        self.port = free_port()
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        base: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.root)}, "delete": {"enabled": True}},
            "http": {"addr": f"{bind}:{self.port}"},
        }
        if tls:
            base["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        self.config = deep_merge(base, config or {})
        self.env: dict[str, str] = {}  # added to the server's environment (e.g. HTTP_PROXY)
        self.client_cert: tuple[Path, Path] | None = None  # presented by start()'s ping (mTLS servers)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``BIND:PORT``, the registry part of an image reference."""
        return f"{self.bind}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def command(self) -> list[str]:
        """The command line that runs the server."""
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> Self:
        """Write config.yml, start the server and wait until ``GET /v2/`` answers.

        If another process took the port since it was chosen, retry on a fresh one (``port``/``url`` change)."""
        for _ in range(3):
            if self._start_once(timeout):
                return self
            self.port = free_port()
            self.config = deep_merge(self.config, {"http": {"addr": f"{self.bind}:{self.port}"}})
        raise RuntimeError(f"{self.impl}: every port tried was taken:\n{self.log_text()[-3000:]}")

    def _start_once(self, timeout: float) -> bool:
        """Start and wait; False when the port turned out to be taken, an exception for any other failure."""
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        cmd = self.command()
        if self.netns:
            cmd = self.netns.wrap(cmd)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log_start = len(self.log_text())
        with self.log_path.open("ab") as log:
            # A session of its own lets kill() reach every worker with one killpg.
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Checked before and after the ping: a server of someone else's on a stolen port may answer too.
            if self.proc.poll() is None and self._ping() and self.proc.poll() is None:
                return True
            if self.proc.poll() is not None:
                output = self.log_text()[log_start:]
                code = self.proc.returncode
                self.proc = None
                if "address already in use" in output.lower():
                    return False
                raise RuntimeError(f"{self.impl} exited with {code} at start:\n{output[-3000:]}")
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.impl} did not answer GET /v2/ within {timeout}s:\n{self.log_text()[-3000:]}")

    def _ping(self) -> bool:
        def once() -> bool:
            conn: http.client.HTTPConnection
            if self.tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                if self.client_cert:
                    ctx.load_cert_chain(*self.client_cert)
                conn = http.client.HTTPSConnection(self.bind, self.port, timeout=1, context=ctx)
            else:
                conn = http.client.HTTPConnection(self.bind, self.port, timeout=1)
            try:
                conn.request("GET", "/v2/")
                return conn.getresponse().status in (200, 401)
            except OSError:
                return False
            finally:
                conn.close()

        return self.netns.call(once) if self.netns else once()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group at once and reap the main process."""
        if self.proc is None:
            return
        end_group(self.proc, sig)
        self._reap_group()
        self.proc = None

    def _reap_group(self) -> None:
        """Wait for the workers of a reaped master (they die with it: PR_SET_PDEATHSIG), killing stragglers.

        No killpg here: once the leader is reaped its pid, and so the group id, may be reused by another test's
        server, and a signal to the group would hit that one. Stragglers are picked one by one instead: members
        of the old group that are not its leader and were orphaned (their parent is gone).
        """
        assert self.proc is not None
        pgid = self.proc.pid
        deadline = time.monotonic() + 10
        while True:
            left = _orphaned_members(pgid)
            if not left:
                return
            if time.monotonic() > deadline:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    def signal_main(self, sig: int) -> None:
        """Send ``sig`` to the main process only; with workers, it is the master's job to pass it on."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 90.0) -> int:
        """Wait for the main process to exit (SIGKILL to the group after ``timeout``); reap; its exit status."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reap_group()
        self.proc = None
        return code

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; idempotent."""
        self.kill(signal.SIGTERM)

    def restart(self, timeout: float = 20.0) -> Self:
        """Stop if running, then start again with the same port, config and root."""
        self.stop()
        return self.start(timeout)

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def requests(self) -> list[tuple[str, str]]:
        """(method, path with query) of every access-log line so far, in order."""
        return _REQUEST_LINE.findall(self.log_text())

    def wait_request(self, pred: Callable[[str, str], bool], timeout: float = 5.0, since: int = 0) -> tuple[str, str]:
        """The first access-log request from index ``since`` on matching ``pred(method, path)``, waiting up to
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for method, path in self.requests()[since:]:
                if pred(method, path):
                    return method, path
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching request in the {self.impl} access log: {self.requests()}")
            time.sleep(0.05)

    def wait_for(self, method: str, path: str, timeout: float = 5.0, since: int = 0) -> None:
        """Wait until the access log shows exactly ``method path`` (path with its query) from index ``since`` on."""
        self.wait_request(lambda m, p: (m, p) == (method, path), timeout, since)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class DockerRegistry(RegistryProcess):
    """Docker Distribution 2.8.2 (``/usr/bin/docker-registry serve CONFIG``)."""

    impl = "docker-registry"

    def command(self) -> list[str]:
        """``docker-registry serve config.yml``."""
        return [DOCKER_REGISTRY_BIN, "serve", str(self.config_path)]


class K3sregServer(RegistryProcess):
    """``k3sreg serve --config config.yml --workers N`` from the project's virtual environment."""

    impl = "k3sreg"

    def __init__(
        self,
        workdir: Path,
        root: Path | None = None,
        config: dict[str, Any] | None = None,
        netns: NetNs | None = None,
        tls: tuple[Path, Path] | None = None,
        workers: int = 1,
        bind: str = "127.0.0.1",
    ) -> None:
        super().__init__(workdir, root, config, netns, tls, bind)
        self.workers = workers

    def command(self) -> list[str]:
        """``k3sreg serve --config config.yml --workers N``."""
        return [str(K3SREG_BIN), "serve", "--config", str(self.config_path), "--workers", str(self.workers)]


def make_registry(impl: str, workdir: Path, **kwargs: Any) -> RegistryProcess:
    """A registry of implementation ``impl`` (one of ``IMPLS``), not started yet."""
    if impl == "docker-registry":
        return DockerRegistry(workdir, **kwargs)
    if impl == "k3sreg":
        return K3sregServer(workdir, **kwargs)
    raise ValueError(f"unknown registry implementation {impl!r}; expected one of {IMPLS}")


def make_variant(variant: str, workdir: Path, **kwargs: Any) -> RegistryProcess:
    """A registry for the test id ``variant`` (a key of ``VARIANTS``), not started yet."""
    impl, extra = VARIANTS[variant]
    return make_registry(impl, workdir, **extra, **kwargs)


def _orphaned_members(pgid: int) -> list[int]:
    """Pids in process group `pgid`, other than its leader, whose parent is init (their master was reaped)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pgid:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and int(fields[1]) == 1:
            found.append(int(entry))
    return found
