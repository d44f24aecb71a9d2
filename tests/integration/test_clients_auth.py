"""Real clients through their login flows (issue 10 parts 1-3): skopeo (`--creds`, `--authfile`), podman
(`login`, push, pull), buildah push and containerd (`ctr --user` through hosts.toml), against k3sreg with
`auth.htpasswd` and with the built-in token service, with docker-registry 2.8.2 on the same htpasswd file as
the control, docker-registry 2.8.2 sending its clients to k3sreg's token service (tokens signed with a
certificate from `k3sreg certs`), and k3sreg sending skopeo to an external token service (tests/peers).

Everything runs in the session's loopback-only network namespace. Users and rules: `auth_harness.RULES`
(ci pushes team/**, nodes pulls everything). The last test scans every k3sreg log of the module for the
passwords used and for anything shaped like a token.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.auth_harness import (
    ISSUER,
    PASSWORDS,
    RULES,
    SERVICE,
    basic,
    creds,
    htpasswd_auth,
    leaks,
    make_pki,
    send,
    write_users,
)
from tests.peers.containerd import Containerd, CtrError, write_hosts_toml
from tests.peers.images import TestLayout
from tests.peers.netns import NetNs
from tests.peers.registry import DockerRegistry, K3sregServer, RegistryProcess
from tests.peers.skopeo import Buildah, Podman, Skopeo, ToolError
from tests.peers.token_issuer import TokenIssuer

VARIANTS = ("k3sreg-htpasswd", "docker-registry-htpasswd", "k3sreg-token", "docker-registry-k3sreg-tokens",
            "k3sreg-external-tokens")


@dataclass
class Site:
    """The registries of each variant (started), a containerd, and the namespace they share."""

    netns: NetNs
    registries: dict[str, RegistryProcess]
    containerd: Containerd
    workdir: Path


@pytest.fixture(scope="module")
def site(netns: NetNs, oci_layout: TestLayout, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Every variant up, each seeded with team/base:1 pushed by ci, and a containerd in the same namespace."""
    work = tmp_path_factory.mktemp("clients-auth")
    users = write_users(work / "htpasswd")
    pki = make_pki(work / "pki")
    k3_token = K3sregServer(work / "k3-token", netns=netns, config={
        "auth": {"token": {"service": SERVICE, "issuer": ISSUER, "builtin": {
            "htpasswd": str(users), "signingkey": str(pki.file("tokens.key")),
            "signingcert": str(pki.file("tokens.crt"))}}},
        "access": RULES})
    regs: dict[str, RegistryProcess] = {
        "k3sreg-htpasswd": K3sregServer(work / "k3-basic", netns=netns,
                                        config={"auth": htpasswd_auth(users), "access": RULES}),
        "docker-registry-htpasswd": DockerRegistry(work / "dr-basic", netns=netns,
                                                   config={"auth": htpasswd_auth(users)}),
        "k3sreg-token": k3_token,
    }
    issuer = TokenIssuer(work, users=dict(PASSWORDS), issuer=ISSUER, service=SERVICE)
    netns.call(issuer.start)  # its socket lives in the namespace, where the clients are
    regs["k3sreg-external-tokens"] = K3sregServer(work / "k3-external", netns=netns, config={
        "auth": issuer.registry_auth()})
    started: list[RegistryProcess] = []
    try:
        for reg in regs.values():
            started.append(reg.start())
        regs["docker-registry-k3sreg-tokens"] = DockerRegistry(work / "dr-token", netns=netns, config={"auth": {
            "token": {"realm": f"{k3_token.url}/auth/token", "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(pki.file("ca.crt"))}}})
        started.append(regs["docker-registry-k3sreg-tokens"].start())
        inside = Skopeo(netns)
        for reg in regs.values():
            inside.copy(oci_layout.oci_ref(), f"docker://{reg.host}/team/base:1", extra=["--dest-creds", creds("ci")])
        with Containerd(work / "containerd", netns) as ctd:
            yield Site(netns, regs, ctd, work)
    finally:
        for reg in started:
            reg.stop()
        issuer.stop()


def authfile(directory: Path, host: str, user: str) -> Path:
    """A containers-auth.json holding `user`'s credentials for `host` (0600, as podman login writes it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "auth.json"
    token = base64.b64encode(creds(user).encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_skopeo_with_creds(site: Site, variant: str, oci_layout: TestLayout) -> None:
    """skopeo pushes with --dest-creds (ci), reads with --creds (nodes), and is refused without credentials or
    with a wrong password."""
    reg, skopeo = site.registries[variant], Skopeo(site.netns)
    ref = f"docker://{reg.host}/team/skopeo-creds:1"
    skopeo.copy(oci_layout.oci_ref(), ref, extra=["--dest-creds", creds("ci")])
    info = json.loads(skopeo.run("inspect", "--tls-verify=false", "--creds", creds("nodes"), ref).stdout)
    assert info["Digest"] == oci_layout.single.digest
    tags = json.loads(skopeo.run("list-tags", "--tls-verify=false", "--creds", creds("nodes"),
                                 f"docker://{reg.host}/team/skopeo-creds").stdout)["Tags"]
    assert tags == ["1"]
    for extra in (["--no-creds"], ["--creds", "nodes:wrong-password"]):
        with pytest.raises(ToolError, match=r"(?i)unauthorized|authentication required|denied"):
            skopeo.run("inspect", "--tls-verify=false", *extra, ref)


@pytest.mark.parametrize("variant", VARIANTS[:3])
def test_skopeo_with_authfile(site: Site, variant: str, oci_layout: TestLayout, tmp_path: Path) -> None:
    """skopeo takes the credentials of an auth.json (--authfile) for copy and inspect."""
    reg, skopeo = site.registries[variant], Skopeo(site.netns)
    ref = f"docker://{reg.host}/team/skopeo-authfile:1"
    pusher, reader = authfile(tmp_path / "ci", reg.host, "ci"), authfile(tmp_path / "nodes", reg.host, "nodes")
    skopeo.copy(oci_layout.oci_ref(), ref, extra=["--dest-authfile", str(pusher)])
    info = json.loads(skopeo.run("inspect", "--tls-verify=false", "--authfile", str(reader), ref).stdout)
    assert info["Digest"] == oci_layout.single.digest


@pytest.mark.parametrize("variant", VARIANTS[:3])
def test_podman_login_push_pull(site: Site, variant: str, tmp_path: Path) -> None:
    """podman login (password on stdin), pull and push under the login; after logout the pull is refused."""
    reg = site.registries[variant]
    with Podman(tmp_path / "podman", site.netns) as podman:
        login = podman.run_input(PASSWORDS["ci"] + "\n", "login", "--tls-verify=false", "--username", "ci",
                                 "--password-stdin", reg.host)
        assert "Login Succeeded" in login.stdout
        podman.pull(f"{reg.host}/team/base:1")
        podman.tag(f"{reg.host}/team/base:1", f"{reg.host}/team/podman:2")
        podman.push(f"{reg.host}/team/podman:2", f"{reg.host}/team/podman:2")
        podman.run("rmi", f"{reg.host}/team/podman:2")
        podman.pull(f"{reg.host}/team/podman:2")
        podman.run("logout", reg.host)
        with pytest.raises(ToolError, match=r"(?i)unauthorized|authentication required"):
            podman.pull(f"{reg.host}/team/base:1")


@pytest.mark.parametrize("variant", VARIANTS[:3])
def test_buildah_push_with_creds(site: Site, variant: str, tmp_path: Path) -> None:
    """buildah commits an image from scratch and pushes it with --creds; skopeo with other creds reads it."""
    reg = site.registries[variant]
    payload = tmp_path / "hello.txt"
    payload.write_text("hello with credentials\n")
    with Buildah(tmp_path / "buildah", site.netns) as buildah:
        container = buildah.from_scratch()
        buildah.copy(container, payload, "/hello.txt")
        buildah.commit(container, "localhost/auth-built:1")
        buildah.push("localhost/auth-built:1", f"{reg.host}/team/buildah:1", extra=["--creds", creds("ci")])
    info = json.loads(Skopeo(site.netns).run("inspect", "--tls-verify=false", "--creds", creds("nodes"),
                                             f"docker://{reg.host}/team/buildah:1").stdout)
    assert info["Digest"].startswith("sha256:")


@pytest.mark.parametrize("variant", VARIANTS[:4])
def test_containerd_pulls_with_user_through_hosts_toml(site: Site, variant: str, oci_layout: TestLayout,
                                                       tmp_path: Path) -> None:
    """ctr --user pulls through hosts.toml (directly, and as the docker.io mirror that containerd asks with
    ns=docker.io); without --user it is refused."""
    reg, ctd = site.registries[variant], site.containerd
    hosts = tmp_path / "certs.d"
    write_hosts_toml(hosts, reg.host, reg.url)
    ref = f"{reg.host}/team/base:1"
    with pytest.raises(CtrError, match=r"(?i)unauthorized|401|access denied"):
        ctd.pull(ref, hosts)
    ctd.pull(ref, hosts, extra=["--user", creds("nodes")])
    assert ctd.images()[ref] == oci_layout.single.digest
    write_hosts_toml(hosts, "docker.io", reg.url)
    ctd.pull("docker.io/team/base:1", hosts, extra=["--user", creds("nodes")])
    assert ctd.images()["docker.io/team/base:1"] == oci_layout.single.digest
    ctd.ctr("images", "rm", ref, "docker.io/team/base:1")


def test_token_flows_used_the_builtin_service(site: Site) -> None:
    """The token variants really ran the token flow: k3sreg's log shows tokens issued to ci and to nodes, by
    GET (skopeo, podman, buildah) and by POST (containerd's OAuth2 password grant)."""
    server = site.registries["k3sreg-token"]
    text = server.log_text()
    assert "token issued: user=ci" in text and "token issued: user=nodes" in text
    assert '"POST /auth/token' in text and '"GET /auth/token' in text


def test_the_realm_is_the_registry_the_client_reached(site: Site) -> None:
    """Without a configured realm, the challenge sends clients to /auth/token on the host and scheme they
    used (here the namespace's loopback address)."""
    reg = site.registries["k3sreg-token"]
    reply = site.netns.call(send, reg.url, "GET", "/v2/team/base/tags/list")
    assert reply.challenges == [f'Bearer realm="{reg.url}/auth/token",service="{SERVICE}",'
                                'scope="repository:team/base:pull"']
    assert site.netns.call(send, reg.url, "GET", "/v2/team/base/tags/list",
                           [("Authorization", basic("nodes"))]).status == 401


def test_no_secret_in_the_logs_after_every_client(site: Site) -> None:
    """After every client flow of this module, no k3sreg log line shows a password, a Basic value, a token or
    a private key."""
    time.sleep(0.2)
    for variant in ("k3sreg-htpasswd", "k3sreg-token", "k3sreg-external-tokens"):
        text = site.registries[variant].log_text()
        assert "aiohttp.access" in text or "GET /v2/" in text  # the scan reads a real log
        assert not leaks(text), (variant, leaks(text))
