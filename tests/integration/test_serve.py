"""`k3sreg serve` as users run it: config errors, env overrides, workers, TLS, headers, health, purging."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.api_harness import Api, running

K3SREG = str(Path(sys.executable).parent / "k3sreg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 60, ssl_ctx: ssl.SSLContext | None = None,
            proc: subprocess.Popen[str] | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"k3sreg exited with {proc.returncode}: {proc.communicate()[1][-2000:]}")
        try:
            with urllib.request.urlopen(url + "/v2/", timeout=1, context=ssl_ctx):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([K3SREG, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_config_errors_are_one_line_each(tmp_path: Path) -> None:
    """A config with several mistakes stops start-up, naming every key path and the nearest key, no traceback."""
    cfg = tmp_path / "config.yml"
    cfg.write_text("version: 0.1\nstorage:\n  filesystem:\n    rootdirectry: /x\nhttp:\n  adr: :5000\n")
    r = subprocess.run([K3SREG, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "storage.filesystem.rootdirectry" in r.stderr and "rootdirectory" in r.stderr
    assert "http.adr" in r.stderr and "'addr'" in r.stderr


def test_env_overrides_and_start_message(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """REGISTRY_HTTP_ADDR and REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY apply; start-up says where and how."""
    port = free_port()
    cfg = tmp_path / "config.yml"
    cfg.write_text("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /nonexistent/never\n"
                   "http:\n  addr: :1\n  headers:\n    X-Content-Type-Options: [nosniff]\n")
    p = start(["--config", str(cfg)], {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
                                       "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "store")})
    procs.append(p)
    wait_up(f"http://127.0.0.1:{port}", proc=p)
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/") as r:
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/x/blobs/uploads/", method="POST")
    with urllib.request.urlopen(req) as r:
        assert r.status == 202
    assert (tmp_path / "store/docker/registry/v2/repositories/x/_uploads").is_dir()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=10)
    assert f"listening on http://127.0.0.1:{port}" in out and "skopeo copy" in out and err == ""


def test_workers_share_the_port_and_are_restarted(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """--workers 2 forks two servers on one port; a killed worker is replaced; a killed master ends them all."""
    port = free_port()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/d\nhttp:\n"
                   f"  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    p = start(["--config", str(cfg), "--workers", "2"])
    procs.append(p)
    wait_up(f"http://127.0.0.1:{port}", proc=p)

    def children() -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    deadline = time.monotonic() + 30
    while len(children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    first = children()
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    # One sample per check: the killed worker stays listed as a zombie until the master reaps it, and the
    # master waits a moment before forking the replacement.
    deadline = time.monotonic() + 30
    now = children()
    while (len(now) < 2 or first[0] in now) and time.monotonic() < deadline:
        time.sleep(0.1)
        now = children()
    assert len(now) == 2 and first[0] not in now
    for _ in range(10):
        wait_up(f"http://127.0.0.1:{port}", timeout=5)
    # A master killed outright takes its workers with it (no orphan keeps the port).
    workers = children()
    p.kill()
    p.wait(10)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{w}").exists() for w in workers)


def make_cert(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem = tmp / "tls.crt", tmp / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def test_tls(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """http.tls.certificate/key serve HTTPS that a client trusting the certificate accepts, and skopeo too."""
    crt, key = make_cert(tmp_path)
    port = free_port()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/d\nhttp:\n"
                   f"  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {crt}\n    key: {key}\n")
    p = start(["--config", str(cfg)])
    procs.append(p)
    ctx = ssl.create_default_context(cafile=str(crt))
    wait_up(f"https://127.0.0.1:{port}", ssl_ctx=ctx, proc=p)
    certs = tmp_path / "certs.d"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(crt.read_bytes())
    r = subprocess.run(["skopeo", "list-tags", "--cert-dir", str(certs), f"docker://127.0.0.1:{port}/nothing/here"],
                       capture_output=True, text=True, timeout=60)
    # The TLS handshake succeeded when the answer is the registry's own NAME_UNKNOWN, not an x509 error.
    assert "x509" not in r.stderr and "404" in r.stderr, r.stderr


async def poll(api: Api, path: str, status: int, timeout: float = 15) -> tuple[int, Any, bytes]:
    """GET path until it answers `status` (a background task has to run first), or the last answer at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await api.req("GET", path)
        if answer[0] == status or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.1)


async def test_health_file_check_makes_registry_unavailable(tmp_path: Path) -> None:
    """While a health.file check's file exists, requests answer 503 UNAVAILABLE; after removal, 200."""
    flag = tmp_path / "down"
    flag.write_text("")
    async with running(tmp_path, health={"file": [{"file": str(flag), "interval": "100ms"}]}) as api:
        status, _, body = await poll(api, "/v2/", 503)
        assert status == 503 and b"UNAVAILABLE" in body
        flag.unlink()
        assert (await poll(api, "/v2/", 200))[0] == 200


async def test_upload_purging_removes_abandoned_uploads(tmp_path: Path) -> None:
    """storage.maintenance.uploadpurging removes uploads older than `age` in the background."""
    async with running(tmp_path, storage={"maintenance": {"uploadpurging": {
            "enabled": True, "age": "1s", "interval": "300ms", "dryrun": False}}}) as api:
        _, headers, _ = await api.req("POST", "/v2/r/blobs/uploads/")
        loc = headers["Location"]
        assert (await api.req("GET", loc))[0] == 204
        assert (await poll(api, loc, 404))[0] == 404


async def test_unix_socket_not_required_for_client(tmp_path: Path) -> None:
    """A server on 127.0.0.1 answers the base endpoint with an empty JSON object."""
    async with running(tmp_path) as api:
        status, headers, body = await api.req("GET", "/v2/")
        assert status == 200 and body == b"{}" and headers["Content-Type"].startswith("application/json")
        async with aiohttp.ClientSession() as s, s.get(api.base + "/v2", allow_redirects=False) as r:
            assert r.status == 301 and r.headers["Location"] == "/v2/"


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    """Starting on a port that is taken fails with one line naming the address, not a traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "config.yml"
        cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/d\nhttp:\n"
                       f"  addr: 127.0.0.1:{port}\n")
        r = subprocess.run([K3SREG, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr


def test_an_unusable_auth_file_stops_start_up_in_one_line(tmp_path: Path) -> None:
    """An auth.token root bundle that cannot be read stops start-up (before any worker starts) with one line
    naming the key and the file, instead of serving with half the trust."""
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/d\n"
                   "http:\n  addr: 127.0.0.1:0\n"
                   f"auth:\n  token:\n    realm: https://r/token\n    service: s\n    issuer: i\n"
                   f"    rootcertbundle: {tmp_path}/missing.pem\n")
    r = subprocess.run([K3SREG, "serve", "--config", str(cfg), "--workers", "2"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "auth.token.rootcertbundle" in r.stderr and "missing.pem" in r.stderr, r.stderr


def test_a_bad_tls_file_is_named_not_blamed_on_the_address(tmp_path: Path) -> None:
    """A missing key or a certificate in the key's place stops start-up naming http.tls.key and the file."""
    crt, _ = make_cert(tmp_path)
    for key in (tmp_path / "missing.key", crt):
        cfg = tmp_path / "config.yml"
        cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/d\nhttp:\n"
                       f"  addr: 127.0.0.1:0\n  tls:\n    certificate: {crt}\n    key: {key}\n")
        r = subprocess.run([K3SREG, "serve", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.startswith("error: http.tls.key: ") and str(key) in r.stderr, r.stderr
        assert "http.addr" not in r.stderr
