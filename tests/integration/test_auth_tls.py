"""TLS with a CA from `k3sreg certs` (issue 10 part 4): containerd in a loopback-only namespace pulls over
HTTPS trusting the generated CA through hosts.toml (`ca`), and with mTLS (`client`, a node certificate from
`k3sreg certs issue --client`); skopeo and podman with `--cert-dir`; the server certificate renewed on SIGHUP
and on a file change while a keep-alive connection stays up; `serve` warning 30 days before expiry.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.auth_harness import PASSWORDS, Pki, basic, creds, htpasswd_auth, make_pki, write_users
from tests.peers.containerd import Containerd, CtrError, HostEntry, write_hosts_toml
from tests.peers.images import TestLayout
from tests.peers.netns import NetNs
from tests.peers.registry import K3SREG_BIN, K3sregServer
from tests.peers.skopeo import Podman, Skopeo, ToolError


@dataclass
class Secure:
    """An HTTPS k3sreg (htpasswd), an mTLS one, a containerd, in the session's namespace."""

    netns: NetNs
    pki: Pki
    tls: K3sregServer
    mtls: K3sregServer
    containerd: Containerd
    cert_dir: Path        # ca.crt, for skopeo/podman --cert-dir
    client_dir: Path      # ca.crt + node1.cert + node1.key


@pytest.fixture(scope="module")
def secure(netns: NetNs, oci_layout: TestLayout, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    """Both registries seeded with team/app:1 (pushed by ci over verified TLS)."""
    work = tmp_path_factory.mktemp("tls")
    users = write_users(work / "htpasswd")
    pki = make_pki(work / "pki")
    pair = (pki.file("registry.crt"), pki.file("registry.key"))
    cert_dir, client_dir = work / "certs", work / "client-certs"
    for directory in (cert_dir, client_dir):
        directory.mkdir()
        shutil.copy(pki.file("ca.crt"), directory / "ca.crt")
    shutil.copy(pki.file("node1.crt"), client_dir / "node1.cert")
    shutil.copy(pki.file("node1.key"), client_dir / "node1.key")
    auth = {"auth": htpasswd_auth(users)}
    mtls_config = {**auth, "http": {"tls": {"clientcas": [str(pki.file("ca.crt"))]}}}
    mtls = K3sregServer(work / "mtls", netns=netns, tls=pair, config=mtls_config)
    mtls.client_cert = (pki.file("node1.crt"), pki.file("node1.key"))
    with K3sregServer(work / "tls", netns=netns, tls=pair, config=auth) as tls, mtls, \
            Containerd(work / "containerd", netns) as ctd:
        skopeo = Skopeo(netns)
        for reg, directory in ((tls, cert_dir), (mtls, client_dir)):
            skopeo.run("copy", "--dest-cert-dir", str(directory), "--dest-creds", creds("ci"),
                       oci_layout.oci_ref(), f"docker://{reg.host}/team/app:1")
        yield Secure(netns, pki, tls, mtls, ctd, cert_dir, client_dir)


def test_containerd_pulls_over_tls_with_the_generated_ca(secure: Secure, oci_layout: TestLayout,
                                                         tmp_path: Path) -> None:
    """hosts.toml `ca` = the CA of `k3sreg certs init`: ctr verifies the registry and pulls; without it the
    certificate is refused."""
    reg = secure.tls
    ref = f"{reg.host}/team/app:1"
    bare = tmp_path / "bare"
    write_hosts_toml(bare, reg.host, reg.url)
    with pytest.raises(CtrError, match=r"x509|certificate"):
        secure.containerd.pull(ref, bare, extra=["--user", creds("nodes")])
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, reg.host, reg.url, [HostEntry(reg.url, ca=str(secure.pki.file("ca.crt")))])
    secure.containerd.pull(ref, hosts, extra=["--user", creds("nodes")])
    assert secure.containerd.images()[ref] == oci_layout.single.digest
    secure.containerd.ctr("images", "rm", ref)


def test_containerd_pulls_with_mtls(secure: Secure, oci_layout: TestLayout, tmp_path: Path) -> None:
    """With `http.tls.clientcas`, ctr pulls presenting the node certificate of `k3sreg certs issue --client`
    (hosts.toml `client`); without it the handshake is refused."""
    reg, ca = secure.mtls, str(secure.pki.file("ca.crt"))
    ref = f"{reg.host}/team/app:1"
    without = tmp_path / "without"
    write_hosts_toml(without, reg.host, reg.url, [HostEntry(reg.url, ca=ca)])
    with pytest.raises(CtrError):
        secure.containerd.pull(ref, without, extra=["--user", creds("nodes")])
    hosts = tmp_path / "certs.d"
    client = (str(secure.pki.file("node1.crt")), str(secure.pki.file("node1.key")))
    write_hosts_toml(hosts, reg.host, reg.url, [HostEntry(reg.url, ca=ca, client=client)])
    secure.containerd.pull(ref, hosts, extra=["--user", creds("nodes")])
    assert secure.containerd.images()[ref] == oci_layout.single.digest
    secure.containerd.ctr("images", "rm", ref)


def test_skopeo_and_podman_with_cert_dir(secure: Secure, oci_layout: TestLayout, tmp_path: Path) -> None:
    """skopeo and podman verify the registry with --cert-dir (ca.crt) and, for mTLS, present node1.cert/.key
    from the same directory; skopeo without the CA is refused."""
    skopeo = Skopeo(secure.netns)
    for reg, directory in ((secure.tls, secure.cert_dir), (secure.mtls, secure.client_dir)):
        ref = f"docker://{reg.host}/team/app:1"
        info = skopeo.run("inspect", "--cert-dir", str(directory), "--creds", creds("nodes"), ref).stdout
        assert oci_layout.single.digest in info
        with Podman(tmp_path / f"podman-{reg.port}", secure.netns) as podman:
            podman.run_input(PASSWORDS["nodes"] + "\n", "login", "--cert-dir", str(directory), "--username",
                             "nodes", "--password-stdin", reg.host)
            podman.run("pull", "--quiet", "--cert-dir", str(directory), f"{reg.host}/team/app:1")
    with pytest.raises(ToolError, match=r"x509|certificate"):
        skopeo.run("inspect", "--creds", creds("nodes"), f"docker://{secure.tls.host}/team/app:1")
    with pytest.raises(ToolError):
        skopeo.run("inspect", "--cert-dir", str(secure.cert_dir), "--creds", creds("nodes"),
                   f"docker://{secure.mtls.host}/team/app:1")


def verified(ca: Path) -> ssl.SSLContext:
    """A client context trusting only `ca`, checking the host name."""
    return ssl.create_default_context(cafile=str(ca))


def serial_on_new_connection(url_port: int, ca: Path) -> int:
    """The serial number of the certificate a fresh TLS connection to 127.0.0.1:port is shown."""
    conn = http.client.HTTPSConnection("127.0.0.1", url_port, timeout=10, context=verified(ca))
    try:
        conn.request("GET", "/v2/")
        conn.getresponse().read()
        assert conn.sock is not None
        der = conn.sock.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        conn.close()


def reissue(pki: Pki, *extra: str) -> int:
    """A new server certificate in place of registry.crt/key (`k3sreg certs issue --force`); its serial."""
    subprocess.run([str(K3SREG_BIN), "certs", "issue", "--host", "127.0.0.1", "--host", "localhost", "--force",
                    "--dir", str(pki.directory), *extra], check=True, capture_output=True)
    return x509.load_pem_x509_certificate(pki.file("registry.crt").read_bytes()).serial_number


def wait_for_serial(port: int, ca: Path, serial: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while serial_on_new_connection(port, ca) != serial:
        assert time.monotonic() < deadline, "the new certificate was not picked up"
        time.sleep(0.2)


@pytest.mark.parametrize("how", ["sighup-two-workers", "file-change"])
def test_certificate_renewal_keeps_connections(how: str, tmp_path: Path) -> None:
    """After `k3sreg certs issue --force`, new connections get the new certificate (on SIGHUP to the master of
    two workers, or by itself when the files change) while a keep-alive connection opened before goes on
    answering on the same socket; a broken pair written meanwhile leaves the old one in force."""
    pki = make_pki(tmp_path / "pki")
    ca = pki.file("ca.crt")
    workers = 2 if how.startswith("sighup") else 1
    with K3sregServer(tmp_path / "reg", tls=(pki.file("registry.crt"), pki.file("registry.key")),
                      workers=workers) as reg:
        kept = http.client.HTTPSConnection("127.0.0.1", reg.port, timeout=10, context=verified(ca))
        kept.request("GET", "/v2/")
        assert kept.getresponse().read() == b"{}"
        old_socket = kept.sock
        old = serial_on_new_connection(reg.port, ca)
        new = reissue(pki)
        assert new != old
        if how.startswith("sighup"):
            assert reg.proc is not None
            os.kill(reg.proc.pid, signal.SIGHUP)
            for _ in range(2 * workers):  # each worker: every new connection must see the new pair
                wait_for_serial(reg.port, ca, new)
        else:
            wait_for_serial(reg.port, ca, new)
        kept.request("GET", "/v2/")
        assert kept.getresponse().read() == b"{}" and kept.sock is old_socket
        kept.close()
        pki.file("registry.key").write_text("not a key\n")
        time.sleep(3)  # two looks at the files
        assert serial_on_new_connection(reg.port, ca) == new
        assert "cannot load" in reg.log_text() and reg.proc is not None and reg.proc.poll() is None


def test_serve_warns_before_the_certificate_expires(tmp_path: Path) -> None:
    """A server certificate with less than 30 days left makes `serve` say so at start, naming the fix."""
    pki = make_pki(tmp_path / "pki")
    reissue(pki, "--days", "10")
    with K3sregServer(tmp_path / "reg", tls=(pki.file("registry.crt"), pki.file("registry.key"))) as reg:
        text = reg.log_text()
    assert "warning: http.tls.certificate" in text and "expires in 9 days" in text and "k3sreg certs issue" in text
    pki2 = make_pki(tmp_path / "pki2")
    with K3sregServer(tmp_path / "reg2", tls=(pki2.file("registry.crt"), pki2.file("registry.key"))) as reg:
        assert "warning: http.tls.certificate" not in reg.log_text()


def test_basic_credentials_over_tls_reach_the_registry(secure: Secure) -> None:
    """A plain verified HTTPS client with Basic credentials: refused without them, served with them."""
    def get(headers: dict[str, str]) -> int:
        conn = http.client.HTTPSConnection("127.0.0.1", secure.tls.port, timeout=10,
                                           context=verified(secure.pki.file("ca.crt")))
        try:
            conn.request("GET", "/v2/team/app/tags/list", headers=headers)
            return conn.getresponse().status
        finally:
            conn.close()

    assert secure.netns.call(get, {}) == 401
    assert secure.netns.call(get, {"Authorization": basic("nodes")}) == 200
