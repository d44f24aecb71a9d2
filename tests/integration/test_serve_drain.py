"""Stopping as in a pod: SIGTERM to the main process with an upload in flight, beside Distribution 2.8.2.

The upload is a monolithic PUT over a raw socket whose body the test holds back half-way: the server is
certainly handling it when SIGTERM arrives, and it cannot finish before the test sends the rest.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.peers.process import end_group
from tests.peers.registry import K3SREG_BIN, RegistryProcess, free_port, make_variant

BLOB = os.urandom(8 << 20)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
FIRST = 5 << 20  # more than k3sreg buffers before its first write, so the data file shows the request arrived
VARIANTS = ["docker-registry", "k3sreg", "k3sreg-w2"]


class HeldUpload:
    """`PUT <upload>?digest=` of BLOB with FIRST bytes of the body sent; `finish()` sends the rest."""

    def __init__(self, reg: RegistryProcess, repo: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=30)
        conn.request("POST", f"/v2/{repo}/blobs/uploads/")
        answer = conn.getresponse()
        answer.read()
        conn.close()
        assert answer.status == 202
        location = urlsplit(answer.headers["Location"])
        target = f"{location.path}?{location.query + '&' if location.query else ''}digest={DIGEST}"
        self.sock = socket.create_connection(("127.0.0.1", reg.port), timeout=60)
        head = (f"PUT {target} HTTP/1.1\r\nHost: {reg.host}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(BLOB)}\r\n\r\n")
        self.sock.sendall(head.encode() + BLOB[:FIRST])
        self.data = reg.root / "docker/registry/v2/repositories" / repo / "_uploads" / location.path.rsplit("/")[-1]
        self.data /= "data"
        deadline = time.monotonic() + 30
        while not (self.data.exists() and self.data.stat().st_size > 0):
            assert time.monotonic() < deadline, "the server never started writing the upload"
            time.sleep(0.02)

    def finish(self) -> bytes:
        """Send the rest of the body; the status line of the answer."""
        self.sock.sendall(BLOB[FIRST:])
        return self.answer()

    def answer(self) -> bytes:
        """What the server sends back first (b"" when it closed the connection)."""
        try:
            return self.sock.recv(65536).split(b"\r\n", 1)[0]
        except ConnectionResetError:
            return b""


@pytest.fixture(params=VARIANTS)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryProcess]:
    reg = make_variant(request.param, tmp_path / "reg")
    yield reg
    reg.stop()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_refused(reg: RegistryProcess) -> None:
    deadline = time.monotonic() + 30
    while not refused(reg.port):
        assert time.monotonic() < deadline, "new connections are still accepted after the signal"
        time.sleep(0.05)


def head_blob(reg: RegistryProcess, repo: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=30)
    conn.request("HEAD", f"/v2/{repo}/blobs/{DIGEST}")
    answer = conn.getresponse()
    conn.close()
    return answer.status, answer.headers["Content-Length"]


def test_sigterm_lets_an_upload_in_flight_finish(registry: RegistryProcess) -> None:
    """SIGTERM: new connections are refused at once, the upload in flight still ends 201, exit status 0."""
    registry.config["http"]["draintimeout"] = "60s"
    registry.start()
    upload = HeldUpload(registry, "drain/done")
    registry.signal_main(signal.SIGTERM)
    wait_refused(registry)
    assert registry.proc is not None and registry.proc.poll() is None  # still waiting for the upload
    assert upload.finish() == b"HTTP/1.1 201 Created"
    assert registry.wait_exit() == 0
    registry.start()
    assert head_blob(registry, "drain/done") == (200, str(len(BLOB)))


def test_an_upload_still_in_flight_when_the_drain_ends_is_cut(registry: RegistryProcess) -> None:
    """http.draintimeout runs out: the upload is cut, no blob appears, exit status 1 (Distribution's too)."""
    registry.config["http"]["draintimeout"] = "1s"
    registry.start()
    upload = HeldUpload(registry, "drain/cut")
    registry.signal_main(signal.SIGTERM)
    assert upload.answer() == b""
    assert registry.wait_exit() == 1
    root = registry.root / "docker/registry/v2"
    assert list(root.glob("blobs/sha256/*/*")) == []
    if registry.impl == "k3sreg":
        assert upload.data.stat().st_size == 0  # the session as it was before the request
    registry.start()
    assert head_blob(registry, "drain/cut")[0] == 404


@pytest.mark.parametrize("variant", ["k3sreg", "k3sreg-w2"])
def test_a_second_ctrl_c_cuts_the_drain(variant: str, tmp_path: Path) -> None:
    """SIGINT drains like SIGTERM; a second SIGINT (Ctrl-C again) cuts the upload at once: exit status 1."""
    registry = make_variant(variant, tmp_path / "reg", config={"http": {"draintimeout": "10m"}})
    with registry:
        upload = HeldUpload(registry, "drain/interrupted")
        registry.signal_main(signal.SIGINT)
        wait_refused(registry)
        registry.signal_main(signal.SIGINT)
        assert upload.answer() == b""
        assert registry.wait_exit() == 1
        assert list(registry.root.glob("docker/registry/v2/blobs/sha256/*/*")) == []


def test_sigterm_to_workers_still_starting_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM as soon as the workers are forked (before they serve) stops them as usual: exit status 0."""
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
                      f"http:\n  addr: 127.0.0.1:{free_port()}\n")
    with (tmp_path / "log").open("wb") as log:
        proc = subprocess.Popen([K3SREG_BIN, "serve", str(config), "--workers", "2"], stdout=log, stderr=log,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout.split()) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "log").read_text()
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "log").read_text()
    finally:
        end_group(proc)
