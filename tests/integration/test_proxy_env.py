"""Upstreams behind a corporate proxy: HTTP_PROXY / NO_PROXY honoured as by registry:2, through a real tinyproxy.

One network namespace holds an upstream docker-registry on a non-loopback address (10.99.0.1, on the
namespace's lo), a tinyproxy on 127.0.0.1, and the k3sreg under test; nothing leaves the namespace.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.images import TestLayout
from tests.peers.netns import NetNs, network_namespace
from tests.peers.process import end_group
from tests.peers.registry import DockerRegistry, K3sregServer, free_port
from tests.peers.skopeo import Skopeo

UPSTREAM_IP = "10.99.0.1"


@dataclass
class Proxied:
    netns: NetNs
    upstream: DockerRegistry
    proxy_url: str
    proxy_log: Path
    workdir: Path


def start_tinyproxy(netns: NetNs, workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """tinyproxy in the foreground inside `netns`, listening on 127.0.0.1, logging every request it relays."""
    port = free_port()
    log = workdir / "tinyproxy.log"
    conf = workdir / "tinyproxy.conf"
    conf.write_text(f'Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile "{log}"\nLogLevel Info\n'
                    "MaxClients 64\nAllow 127.0.0.1\n")
    proc = subprocess.Popen(netns.wrap(["tinyproxy", "-d", "-c", str(conf)]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while "listening on" not in (log.read_text() if log.exists() else "").lower():
        if proc.poll() is not None or time.monotonic() > deadline:
            end_group(proc)
            raise RuntimeError(f"tinyproxy did not start: {log.read_text() if log.exists() else ''}")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", log


@pytest.fixture(scope="module")
def proxied(oci_layout: TestLayout, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """The namespace, the upstream seeded with demo:1, and the proxy."""
    if shutil.which("tinyproxy") is None:
        pytest.fail("tinyproxy is not installed: run `make test`, which installs the Debian package")
    work = tmp_path_factory.mktemp("proxyenv")
    with network_namespace() as ns:
        subprocess.run(ns.wrap(["ip", "addr", "add", f"{UPSTREAM_IP}/32", "dev", "lo"]), check=True)
        upstream = DockerRegistry(work / "hub", netns=ns)
        upstream.config["http"]["addr"] = f"0.0.0.0:{upstream.port}"
        with upstream:
            Skopeo(ns).copy(oci_layout.oci_ref(), f"docker://{upstream.host}/library/demo:1")
            proc, url, log = start_tinyproxy(ns, work)
            try:
                yield Proxied(ns, upstream, url, log, work)
            finally:
                end_group(proc)


def cache_for(p: Proxied, name: str, env: dict[str, str]) -> K3sregServer:
    """A k3sreg whose docker.io upstream is the registry's non-loopback address, with `env` as its only proxy
    settings (whatever proxy variables this machine has are blanked)."""
    cfg = {"upstreams": [{"name": "docker.io", "url": f"http://{UPSTREAM_IP}:{p.upstream.port}"}]}
    cache = K3sregServer(p.workdir / name, netns=p.netns, config=cfg)
    blank = {v: "" for v in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")}
    cache.env = {**blank, **env}
    return cache


def test_upstream_requests_go_through_http_proxy(proxied: Proxied, oci_layout: TestLayout) -> None:
    """With HTTP_PROXY set, k3sreg fetches the manifest and blobs through the proxy, and says so at start-up."""
    before = proxied.proxy_log.read_text()
    with cache_for(proxied, "via-proxy", {"HTTP_PROXY": proxied.proxy_url}) as cache:
        got = Skopeo(proxied.netns).inspect(f"docker://{cache.host}/docker.io/library/demo:1")
        assert got["Digest"] == oci_layout.single.digest
        layer = oci_layout.single.layers[0].digest
        Skopeo(proxied.netns).copy(f"docker://{cache.host}/docker.io/library/demo:1",
                                   f"oci:{proxied.workdir}/out-proxy:1")
        startup = cache.log_text()
    relayed = proxied.proxy_log.read_text()[len(before):]
    assert f"{UPSTREAM_IP}:{proxied.upstream.port}/v2/library/demo/manifests/1" in relayed
    assert f"/v2/library/demo/blobs/{layer}" in relayed
    assert f"upstream docker.io: http://{UPSTREAM_IP}:{proxied.upstream.port} (via proxy {proxied.proxy_url})" \
        in startup


def test_no_proxy_bypasses_the_proxy(proxied: Proxied, oci_layout: TestLayout) -> None:
    """An upstream listed in NO_PROXY is reached directly: the proxy relays nothing for it."""
    before = proxied.proxy_log.read_text()
    env = {"HTTP_PROXY": proxied.proxy_url, "NO_PROXY": "example.com,10.0.0.0/8"}
    with cache_for(proxied, "direct", env) as cache:
        got = Skopeo(proxied.netns).inspect(f"docker://{cache.host}/docker.io/library/demo:1")
        assert got["Digest"] == oci_layout.single.digest
        assert "(direct)" in cache.log_text()
    assert UPSTREAM_IP not in proxied.proxy_log.read_text()[len(before):]
