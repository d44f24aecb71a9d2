"""The k3sreg image (`make image`): reproducible, minimal, non-root, read-only, and run by podman and containerd.

The image is built once per session (or taken from the build cache under .cache/image when nothing it is
made of changed); the reproducibility test builds it a second time, from scratch, and compares.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from image.build import REPO, Built, build
from k3sreg.kube.render import render
from k3sreg.kube.spec import DeploySpec
from tests.peers.containerd import Containerd, HostEntry, write_hosts_toml
from tests.peers.images import TestLayout
from tests.peers.netns import NetNs
from tests.peers.skopeo import Podman, Skopeo, ToolError

UID = 65532
PORT = 5000
# The sandbox forbids the runtime to raise RLIMIT_NOFILE/NPROC to podman's defaults (EPERM from runc); lower
# limits can always be set.
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
# A build from scratch takes one to two minutes on 2 busy cores, and the first test also waits for the fixture's.
pytestmark = pytest.mark.timeout(900)


def _blob(built: Built, digest: str) -> bytes:
    return (Path(built.layout) / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def _manifest(built: Built) -> dict[str, Any]:
    return json.loads(_blob(built, built.digest))


def _config(built: Built) -> dict[str, Any]:
    return json.loads(_blob(built, built.config_digest))


def _entries(built: Built) -> dict[str, tarfile.TarInfo]:
    """Every path of the image (upper layers win), as the runtime would see it."""
    seen: dict[str, tarfile.TarInfo] = {}
    for layer in _manifest(built)["layers"]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(_blob(built, layer["digest"])))) as tar:
            for info in tar.getmembers():
                seen[info.name] = info
    return seen


def test_two_builds_give_the_same_digest(image: Built, tmp_path: Path) -> None:
    """A second build from scratch of the same commit and lock gives the same manifest digest and archives."""
    again = build(REPO, reuse=False, out=tmp_path / "again")
    assert again.digest == image.digest
    assert again.layer_sizes == image.layer_sizes
    assert Path(again.oci_archive).read_bytes() == Path(image.oci_archive).read_bytes()
    assert Path(again.docker_archive).read_bytes() == Path(image.docker_archive).read_bytes()


def test_image_config_runs_k3sreg_as_non_root(image: Built) -> None:
    """Entrypoint k3sreg, serve the baked config, user 65532, the storage a volume, OCI labels from the commit."""
    config = _config(image)
    c = config["config"]
    assert c["Entrypoint"] == ["k3sreg"]
    assert c["Cmd"] == ["serve", "/etc/k3sreg/config.yml"]
    assert c["User"] == f"{UID}:{UID}"
    assert c["Volumes"] == {"/var/lib/registry": {}}
    labels = c["Labels"]
    assert labels["org.opencontainers.image.version"] == image.version
    assert labels["org.opencontainers.image.revision"] == image.revision
    assert len(image.revision) == 40
    assert labels["org.opencontainers.image.created"] == config["created"]
    assert config["created"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(image.created))
    assert image.compressed_size < 60 * 1024 * 1024


def test_rootfs_has_no_shell_no_apt_and_fixed_metadata(image: Built) -> None:
    """No shell, apt, dpkg or compiler; one mtime, root-owned with empty owner names, except the storage."""
    entries = _entries(image)
    binaries = sorted(n for n in entries if n.startswith(("bin/", "usr/bin/", "sbin/", "usr/sbin/", "usr/local/bin/")))
    assert binaries == ["usr/bin/python3.11", "usr/local/bin/k3sreg"]
    for forbidden in ("bin/sh", "usr/bin/apt", "usr/bin/dpkg", "usr/bin/gcc", "usr/lib/apt", "usr/share/doc"):
        assert forbidden not in entries
    assert not [n for n in entries if "/pip/" in n or n.endswith("/pip") or "/setuptools/" in n]
    assert {i.mtime for i in entries.values()} == {image.created}
    storage = entries["var/lib/registry"]
    assert (storage.uid, storage.gid, storage.isdir()) == (UID, UID, True)
    others = {(i.uid, i.gid, i.uname, i.gname) for n, i in entries.items() if n != "var/lib/registry"}
    assert others == {(0, 0, "", "")}
    assert "usr/local/lib/python3.11/dist-packages/k3sreg/cli/__pycache__/main.cpython-311.pyc" in entries
    assert entries["etc/ssl/certs/ca-certificates.crt"].size > 100_000


@pytest.fixture(scope="module")
def running(image: Built, netns: NetNs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """The image run by podman in the session's loopback-only namespace: read-only root, a volume for storage."""
    work = tmp_path_factory.mktemp("podman-image")
    data = work / "data"
    data.mkdir()
    os.chown(data, UID, UID)
    podman = Podman(work / "podman", netns=netns)
    try:
        podman.run("load", "--quiet", "--input", image.oci_archive)
        podman.run("run", "--detach", "--name", "k3sreg", "--network", "host", "--read-only", *ULIMITS,
                   "--volume", f"{data}:/var/lib/registry", image.reference)
        _wait_ready(netns, podman)
        yield podman
    finally:
        with contextlib.suppress(ToolError):
            podman.run("rm", "--force", "--time", "5", "k3sreg")
        podman.cleanup()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_ready(netns: NetNs, podman: Podman, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if netns.call(_get, f"http://127.0.0.1:{PORT}/v2/")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    logs = podman.run("logs", "k3sreg")
    raise TimeoutError(f"the k3sreg container did not answer within {timeout}s:\n{logs.stdout}{logs.stderr}")


def test_podman_runs_the_image_read_only_and_skopeo_round_trips(
    running: Podman, netns: NetNs, oci_layout: TestLayout, tmp_path: Path
) -> None:
    """podman runs the image with a read-only root; skopeo pushes into it and pulls back the same digest."""
    skopeo = Skopeo(netns)
    skopeo.copy(oci_layout.oci_ref(), f"docker://127.0.0.1:{PORT}/roundtrip/app:1")
    skopeo.copy(f"docker://127.0.0.1:{PORT}/roundtrip/app:1", f"oci:{tmp_path / 'back'}:1")
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == oci_layout.single.digest
    assert netns.call(_get, f"http://127.0.0.1:{PORT}/debug/health") == (200, b"{}")


def test_container_is_non_root_with_only_storage_writable(running: Podman) -> None:
    """Inside: uid/gid 65532, / read-only, /var/lib/registry writable, the CA bundle loaded for upstream TLS."""
    probe = (
        "import os, ssl\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n    open('/usr/probe', 'w')\nexcept OSError as e:\n    print('root', e.errno)\n"
        "open('/var/lib/registry/probe', 'w').close(); os.unlink('/var/lib/registry/probe'); print('storage ok')\n"
        "print('cas', len(ssl.create_default_context().get_ca_certs()) > 100)\n"
    )
    out = running.run("exec", "k3sreg", "/usr/bin/python3.11", "-c", probe).stdout.split("\n")
    assert out[:4] == [f"{UID} {UID}", "root 30", "storage ok", "cas True"]  # 30: EROFS
    with pytest.raises(ToolError):
        running.run("exec", "k3sreg", "/bin/sh", "-c", "true")


def test_containerd_imports_the_docker_archive(image: Built, netns: NetNs, tmp_path: Path) -> None:
    """`ctr images import` takes the docker-archive (K3s's agent/images/ path) and unpacks it."""
    with Containerd(tmp_path / "containerd", netns=netns) as ctrd:
        ctrd.ctr("images", "import", "--snapshotter", "native", image.docker_archive)
        assert image.reference in ctrd.images()
        # containerd writes its own manifest for a docker-archive, but the config blob is ours, byte for byte.
        assert ctrd.ctr("content", "get", image.config_digest).stdout.encode() == _blob(image, image.config_digest)
        assert "complete" in ctrd.ctr("images", "check").stdout


def test_image_pushes_itself_and_containerd_pulls_it(
    image: Built, running: Podman, netns: NetNs, tmp_path: Path
) -> None:
    """skopeo copies the oci-archive into the running k3sreg; containerd pulls it back through hosts.toml."""
    Skopeo(netns).copy(f"oci-archive:{image.oci_archive}", f"docker://127.0.0.1:{PORT}/k3sreg/k3sreg:{image.version}")
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, "registry.local", "https://registry.local",
                     [HostEntry(f"http://127.0.0.1:{PORT}")])
    with Containerd(tmp_path / "containerd", netns=netns) as ctrd:
        ref = f"registry.local/k3sreg/k3sreg:{image.version}"
        ctrd.pull(ref, hosts)
        assert ctrd.images()[ref] == image.digest


def test_rendered_config_map_runs_in_the_image(image: Built, netns: NetNs, tmp_path: Path) -> None:
    """The image serves the ConfigMap of `deploy render`, mounted as the pod mounts it, with the Secret's env."""
    spec = DeploySpec(htpasswd=None)
    config = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": "/var/lib/registry"}},
              "http": {"addr": ":5001"},
              "upstreams": [{"name": "docker.io", "url": "https://registry-1.docker.io", "username": "u",
                             "password": "from-the-secret", "offline": True}]}
    rendered = render(spec, config, ["docker.io"])
    # Without the Secret's REGISTRY_UPSTREAMS_0_PASSWORD the config is refused (username without password).
    config_map = next(d for d in rendered.objects if d["kind"] == "ConfigMap")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.yml").write_text(config_map["data"]["config.yml"])
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in rendered.pod.env().items()))
    assert "from-the-secret" not in (etc / "config.yml").read_text()
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, UID, UID)
    with Podman(tmp_path / "podman", netns=netns) as podman:
        podman.run("load", "--quiet", "--input", image.oci_archive)
        podman.run("run", "--detach", "--name", "pod", "--network", "host", "--read-only", *ULIMITS,
                   "--env-file", str(env_file), "--volume", f"{etc}:/etc/k3sreg:ro",
                   "--volume", f"{data}:/var/lib/registry", image.reference)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if netns.call(_get, "http://127.0.0.1:5001/debug/health") == (200, b"{}"):
                        break
                time.sleep(0.3)
            else:
                logs = podman.run("logs", "pod")
                pytest.fail(f"not ready:\n{logs.stdout}{logs.stderr}")
            assert netns.call(_get, "http://127.0.0.1:5001/v2/")[0] == 200
            logs = podman.run("logs", "pod")
            assert "upstream docker.io" in logs.stderr + logs.stdout
        finally:
            with contextlib.suppress(ToolError):
                podman.run("rm", "--force", "--time", "5", "pod")
