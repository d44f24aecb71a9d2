"""Issue 10 part 5: requests that try to get in where they do not belong, against the running `k3sreg serve`
with `auth.htpasswd` and with `auth.token` (built-in service), and against docker-registry 2.8.2 with the same
htpasswd file and the same token trust as the control.

Every row names what a refusing registry answers. `test_the_table_catches_a_permissive_registry` runs every
row against a k3sreg without `auth`, which lets them all through: each row's check fails there, so none of
these tests can pass on a registry that lets the request in. Each row is sent from a loopback address of its
own, so that the failed-login limiter of one row never answers for another.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from k3sreg.auth.keys import libtrust_key_id
from tests.integration.auth_harness import (
    ISSUER,
    PASSWORDS,
    RULES,
    SECRETS,
    SERVICE,
    Pki,
    Reply,
    basic,
    control_token_auth,
    creds,
    fetch_token,
    htpasswd_auth,
    leaks,
    make_pki,
    send,
    token_auth,
    write_users,
)
from tests.peers.images import TestLayout, read_blob
from tests.peers.registry import DockerRegistry, K3sregServer, RegistryProcess
from tests.peers.skopeo import Skopeo
from tests.unit.auth.tokenkit import b64url, cert_for, der_b64, hmac_with, mint, new_key, unsigned

_ADDRESSES = itertools.count(10)


def next_source() -> str:
    """A loopback address no other request of this module used (127.0.0.10 and up)."""
    n = next(_ADDRESSES)
    return f"127.0.{n // 250}.{n % 250 + 2}"


@dataclass
class World:
    """The registries under attack, the upstream behind the caches, and what was pushed."""

    pki: Pki
    hub: DockerRegistry                       # docker.io for the caches (no auth: the test sees every request)
    servers: dict[str, RegistryProcess]       # basic, token: k3sreg; dr-basic, dr-token: docker-registry; open
    secret_manifest: bytes
    secret_digest: str
    layer: str
    layer_bytes: bytes


def claims(scope_name: str = "secret/app", actions: tuple[str, ...] = ("pull",), **over: Any) -> dict[str, Any]:
    """Good claims of the test issuer for SERVICE, granting `actions` on `scope_name`, overridable."""
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "sub": "admin", "aud": SERVICE, "exp": now + 300, "nbf": now - 5,
                            "iat": now, "jti": b64url(str(now).encode()),
                            "access": [{"type": "repository", "name": scope_name, "actions": list(actions)}]}
    base.update(over)
    return base


def signed(pki: Pki, body: dict[str, Any]) -> str:
    """A token signed by the CA-issued signer, its chain in x5c."""
    return mint(pki.signer.key, body, x5c=[der_b64(pki.signer.cert)])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, oci_layout: TestLayout) -> Iterator[World]:
    """k3sreg with htpasswd and with the built-in token service (both caching docker.io from `hub`, with the
    issue's access rules), docker-registry with the same auth, and an open k3sreg; secret/app and public/app
    pushed into each."""
    work = tmp_path_factory.mktemp("attacks")
    users = write_users(work / "htpasswd")
    pki = make_pki(work / "pki")
    skopeo = Skopeo()
    cache = {"upstreams": [{"name": "docker.io"}], "names": ["registry.local"]}
    with DockerRegistry(work / "hub") as hub:
        skopeo.copy(oci_layout.oci_ref(), f"docker://{hub.host}/library/demo:1")
        cache["upstreams"][0]["url"] = hub.url
        made = {
            "basic": K3sregServer(work / "basic", config={"auth": htpasswd_auth(users), "access": RULES, **cache}),
            "token": K3sregServer(work / "token", config={"auth": token_auth(users, pki), "access": RULES, **cache}),
            "dr-basic": DockerRegistry(work / "dr-basic", config={"auth": htpasswd_auth(users)}),
            "dr-token": DockerRegistry(work / "dr-token", config={"auth": control_token_auth(pki)}),
            "open": K3sregServer(work / "open", config=cache),
        }
        try:
            for server in made.values():
                server.start()
            for name, server in made.items():
                for repo in ("secret/app", "public/app"):
                    dest = f"docker://{server.host}/{repo}:1"
                    if name == "dr-token":
                        grant = signed(pki, claims(repo, ("pull", "push")))
                        skopeo.copy(oci_layout.oci_ref(), dest, extra=["--dest-registry-token", grant])
                    elif name == "open":
                        skopeo.copy(oci_layout.oci_ref(), dest)
                    else:
                        skopeo.copy(oci_layout.oci_ref(), dest, extra=["--dest-creds", creds("admin")])
            single = oci_layout.single
            layer = single.layers[0].digest
            yield World(pki, hub, made, read_blob(oci_layout.root, single.digest), single.digest, layer,
                        read_blob(oci_layout.root, layer))
        finally:
            for server in made.values():
                server.stop()


@dataclass(frozen=True)
class Attack:
    """One request that must be refused: `expect` is the status a refusing k3sreg answers; `control` what
    docker-registry answers with the same auth (None: docker-registry only must not serve the content)."""

    name: str
    method: str
    path: str
    headers: Callable[[World, str], list[tuple[str, str]]] = lambda w, url: []
    expect: int = 401
    control: int | None = 401


LET_IN = 200
"""`control` of a row docker-registry lets through (k3sreg is stricter there): its run checks exactly that."""


def auth(value: str) -> Callable[[World, str], list[tuple[str, str]]]:
    return lambda w, url: [("Authorization", value)]


MANIFEST = "/v2/secret/app/manifests/1"
BASIC_ATTACKS = [
    Attack("no-credentials", "GET", MANIFEST),
    Attack("no-credentials-head", "HEAD", MANIFEST),
    Attack("no-credentials-base", "GET", "/v2/"),
    Attack("wrong-password-catalog", "GET", "/v2/_catalog", auth(basic("admin", "not-the-password"))),
    Attack("wrong-password", "GET", MANIFEST, auth(basic("admin", "not-the-password"))),
    Attack("unknown-user", "GET", MANIFEST, auth(basic("mallory", PASSWORDS["admin"]))),
    Attack("empty-password", "GET", MANIFEST, auth(basic("admin", ""))),
    Attack("password-of-another-user", "GET", MANIFEST, auth(basic("admin", PASSWORDS["reader"]))),
    Attack("no-colon", "GET", MANIFEST, auth("Basic " + base64.b64encode(f"admin{PASSWORDS['admin']}".encode())
                                              .decode())),
    Attack("bad-base64", "GET", MANIFEST, auth("Basic ***not*base64***")),
    Attack("wrong-scheme-bearer", "GET", MANIFEST, auth("Bearer " + basic("admin").split(" ", 1)[1])),
    Attack("wrong-scheme-digest", "GET", MANIFEST, auth('Digest username="admin", realm="k3sreg-tests"')),
    Attack("scheme-only", "GET", MANIFEST, auth("Basic")),
    Attack("bad-then-good-headers", "GET", MANIFEST,
           lambda w, url: [("Authorization", basic("admin", "wrong")), ("Authorization", basic("admin"))]),
    # Go's Header.Get reads the first value only, so docker-registry lets this one in: k3sreg refuses any
    # request with two Authorization headers.
    Attack("good-then-bad-headers", "GET", MANIFEST,
           lambda w, url: [("Authorization", basic("admin")), ("Authorization", basic("admin", "wrong"))],
           control=LET_IN),
    Attack("huge-header", "GET", MANIFEST, auth("Basic " + "QUFB" * 2000)),
]
# Logged-in users beyond their rules (k3sreg only: docker-registry has no per-repository rules).
RULE_ATTACKS = [
    Attack("reader-reads-a-repository-it-may-not", "GET", MANIFEST, auth(basic("reader")), 403),
    Attack("reader-reads-a-blob-it-may-not", "GET", "/v2/secret/app/blobs/{layer}", auth(basic("reader")), 403),
    Attack("reader-deletes", "DELETE", "/v2/public/app/manifests/{digest}", auth(basic("reader")), 403),
    Attack("reader-pushes", "POST", "/v2/public/app/blobs/uploads/", auth(basic("reader")), 403),
    Attack("ci-mounts-without-pull-on-from", "POST", "/v2/ci/stolen/blobs/uploads/?mount={layer}&from=secret/app",
           auth(basic("ci")), 403),
]
# Anonymous requests for secret/app spelled so that a careless check might read another name, or none.
PATH_ATTACKS = [
    Attack("double-slash", "GET", "/v2//secret/app/manifests/1", control=None),
    Attack("dot-segment", "GET", "/v2/./secret/app/manifests/1", control=None),
    Attack("dot-dot-from-public", "GET", "/v2/public/../secret/app/manifests/1", control=None),
    Attack("encoded-dot-dot", "GET", "/v2/public/%2e%2e/secret/app/manifests/1", control=None),
    Attack("encoded-slash", "GET", "/v2/secret%2Fapp/manifests/1", control=None),
    Attack("encoded-slashes-from-public", "GET", "/v2/public%2F..%2Fsecret%2Fapp/manifests/1", control=None),
    Attack("head-instead-of-get", "HEAD", MANIFEST),
    Attack("trailing-slash", "GET", MANIFEST + "/", control=None),
    Attack("tags-trailing-slash", "GET", "/v2/secret/app/tags/list/", control=None),
    Attack("upper-case", "GET", "/v2/Secret/app/manifests/1", control=None),
    Attack("all-upper-case", "GET", "/v2/SECRET/APP/manifests/1", control=None),
    Attack("blob-by-digest", "GET", "/v2/secret/app/blobs/{layer}"),
    Attack("ns-naming-this-registry", "GET", MANIFEST + "?ns=registry.local", control=None),
    Attack("ns-upper-case", "GET", MANIFEST + "?ns=REGISTRY.LOCAL", control=None),
    Attack("base-without-slash", "GET", "/v2", control=None),
]


def bearer(make: Callable[[World], str]) -> Callable[[World, str], list[tuple[str, str]]]:
    return lambda w, url: [("Authorization", f"Bearer {make(w)}")]


def _good(w: World) -> dict[str, Any]:
    return claims("secret/app", ("pull",))


TOKEN_ATTACKS = [
    Attack("no-token", "GET", MANIFEST),
    Attack("alg-none", "GET", MANIFEST, bearer(lambda w: unsigned(_good(w), kid=libtrust_key_id(
        w.pki.ca.key.public_key())))),
    Attack("hs256-with-the-public-key", "GET", MANIFEST, bearer(lambda w: hmac_with(
        w.pki.signer.cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo), _good(w),
        x5c=[der_b64(w.pki.signer.cert)]))),
    Attack("expired", "GET", MANIFEST, bearer(lambda w: signed(w.pki, claims(exp=int(time.time()) - 3600)))),
    Attack("not-yet-valid", "GET", MANIFEST, bearer(lambda w: signed(w.pki, claims(nbf=int(time.time()) + 3600)))),
    Attack("wrong-audience", "GET", MANIFEST, bearer(lambda w: signed(w.pki, claims(aud="another-registry")))),
    Attack("wrong-issuer", "GET", MANIFEST, bearer(lambda w: signed(w.pki, claims(iss="another-issuer")))),
    Attack("chain-not-reaching-the-root", "GET", MANIFEST, bearer(lambda w: foreign_chain(_good(w)))),
    Attack("unknown-kid", "GET", MANIFEST, bearer(lambda w: mint(new_key(), _good(w), kid="AAAA:BBBB:CCCC"))),
    Attack("tampered-claims", "GET", MANIFEST, bearer(lambda w: tampered(signed(w.pki, claims("public/app"))))),
    Attack("token-for-a-used-on-b", "GET", MANIFEST, bearer(lambda w: signed(w.pki, claims("public/app")))),
    Attack("pull-token-pushes", "POST", "/v2/secret/app/blobs/uploads/", bearer(lambda w: signed(w.pki, claims()))),
    Attack("pull-token-deletes", "DELETE", "/v2/secret/app/manifests/{digest}",
           bearer(lambda w: signed(w.pki, claims()))),
    Attack("catalog-without-catalog-scope", "GET", "/v2/_catalog", bearer(lambda w: signed(w.pki, claims()))),
    Attack("basic-where-a-token-is-expected", "GET", MANIFEST, auth(basic("admin"))),
    Attack("garbage-token", "GET", MANIFEST, auth("Bearer " + "A" * 7000)),
    Attack("mount-with-push-token-but-no-pull-on-from", "POST",
           "/v2/public/app/blobs/uploads/?mount={layer}&from=secret/app",
           bearer(lambda w: signed(w.pki, claims("public/app", ("pull", "push"))))),
]


def foreign_chain(body: dict[str, Any]) -> str:
    """A token whose x5c chain ends at a CA of the same name that nobody trusts."""
    outsider = cert_for(new_key(), None, "k3sreg test CA", ca=True)
    leaf = cert_for(new_key(), outsider, "tokens")
    return mint(leaf.key, body, x5c=[der_b64(leaf.cert), der_b64(outsider.cert)])


def tampered(token: str) -> str:
    """`token` with its claims swapped for a grant on secret/app, the signature kept."""
    head, _, sig = token.split(".")
    forged = f"{head}.{b64url(json.dumps(claims('secret/app', ('pull', 'push', 'delete'))).encode())}.{sig}"
    SECRETS.add(forged)
    return forged


def fill(path: str, world: World) -> str:
    return path.format(digest=world.secret_digest, layer=world.layer)


def refused(world: World, reply: Reply, status: int | None) -> bool:
    """True when the answer is `status` (anything but a success when None) and shows nothing of secret/app."""
    ok = reply.status == status if status is not None else reply.status >= 300
    return ok and world.secret_manifest not in reply.body and world.layer_bytes not in reply.body


def attack(world: World, server: str, row: Attack) -> Reply:
    reg = world.servers[server]
    return send(reg.url, row.method, fill(row.path, world), row.headers(world, reg.url), source=next_source())


def cases(rows: list[Attack], ours: str, theirs: str | None) -> list[Any]:
    """(server, row, expected status) for k3sreg, and for docker-registry where it applies."""
    out = [pytest.param(ours, row, row.expect, id=f"k3sreg-{row.name}") for row in rows]
    if theirs is not None:
        out += [pytest.param(theirs, row, row.control, id=f"docker-registry-{row.name}") for row in rows]
    return out


@pytest.mark.parametrize(("server", "row", "expect"), cases(BASIC_ATTACKS + PATH_ATTACKS, "basic", "dr-basic")
                         + cases(RULE_ATTACKS, "basic", None))
def test_htpasswd_refuses(world: World, server: str, row: Attack, expect: int | None) -> None:
    """k3sreg with htpasswd refuses each attack (docker-registry with the same file too, where it applies)."""
    reply = attack(world, server, row)
    if expect == LET_IN:
        assert reply.status == 200
        return
    assert refused(world, reply, expect), (reply.status, reply.body[:300])
    if server == "basic" and expect == 401:
        assert reply.challenges == ['Basic realm="k3sreg-tests"']
        assert row.method == "HEAD" or json.loads(reply.body)["errors"][0]["code"] == "UNAUTHORIZED"
    if server == "basic" and expect == 403:
        assert json.loads(reply.body)["errors"][0]["code"] == "DENIED" and not reply.challenges


@pytest.mark.parametrize(("server", "row", "expect"), cases(TOKEN_ATTACKS + PATH_ATTACKS, "token", "dr-token"))
def test_token_refuses(world: World, server: str, row: Attack, expect: int | None) -> None:
    """k3sreg with token auth refuses each attack with Distribution's Bearer challenge (docker-registry with
    the same trust too)."""
    reply = attack(world, server, row)
    assert refused(world, reply, expect), (reply.status, reply.body[:300])
    if server == "token" and expect == 401:
        [challenge] = reply.challenges
        assert challenge.startswith(f'Bearer realm="{world.servers["token"].url}/auth/token",service="{SERVICE}"')


def test_good_credentials_pass_everywhere(world: World) -> None:
    """The positive control of the table: the same request with good credentials or a good token is served."""
    for server, value in (("basic", basic("admin")), ("dr-basic", basic("admin")),
                          ("dr-token", "Bearer " + signed(world.pki, claims())),
                          ("token", "Bearer " + fetch_token(world.servers["token"].url, "admin",
                                                            "repository:secret/app:pull"))):
        reply = send(world.servers[server].url, "GET", MANIFEST, [("Authorization", value)], source=next_source())
        assert reply.status == 200 and reply.body == world.secret_manifest, server


@pytest.mark.parametrize("row", BASIC_ATTACKS + RULE_ATTACKS + PATH_ATTACKS + TOKEN_ATTACKS, ids=lambda r: r.name)
def test_the_table_catches_a_permissive_registry(world: World, row: Attack) -> None:
    """Against a k3sreg without auth every attack gets something else than the refusal its row expects: the
    rows above cannot pass on a registry that lets them in."""
    reply = attack(world, "open", row)
    assert not refused(world, reply, row.expect), (reply.status, reply.body[:200])


# The cache's routes: `ns` and the path prefix name the cache repository docker.io/library/demo, which only
# callers allowed to pull that name may read or fill. (user, request path, expected status for htpasswd)
CACHE_ATTACKS = [
    ("reader", "/v2/library/demo/manifests/1?ns=docker.io", 403),
    ("reader", "/v2/library/demo/manifests/1?ns=DOCKER.IO", 403),
    ("reader", "/v2/docker.io/library/demo/manifests/1", 403),
    ("reader", "/v2/docker.io/demo/manifests/1", 403),
    ("reader", "/v2/library/demo/manifests/1?ns=docker.io&ns=registry.local", 403),
    (None, "/v2/library/demo/manifests/1?ns=docker.io", 401),
    (None, "/v2/docker.io/library/demo/manifests/1", 401),
    ("hubuser", "/v2/secret/app/manifests/1?ns=registry.local", 403),
    ("hubuser", "/v2/secret/app/manifests/1", 403),
]


def caller(world: World, server: str, user: str | None, path: str) -> list[tuple[str, str]]:
    """Credentials of `user` as the server wants them: Basic, or a token holding every grant the user could
    ask for by the names in the path (what a client would get from the token service)."""
    if user is None:
        return []
    if server == "basic":
        return [("Authorization", basic(user))]
    name = path.split("/v2/", 1)[1].split("/manifests/", 1)[0]
    scopes = [f"repository:{n}:pull" for n in (name, f"docker.io/{name}", f"docker.io/library/{name}")]
    return [("Authorization", "Bearer " + fetch_token(world.servers[server].url, user, *scopes))]


@pytest.mark.parametrize(("user", "path", "status"), CACHE_ATTACKS, ids=[p for _, p, _ in CACHE_ATTACKS])
@pytest.mark.parametrize("server", ["basic", "token"])
def test_cache_routes_are_authorized_as_the_cache_name(world: World, server: str, user: str | None, path: str,
                                                       status: int) -> None:
    """`ns` and the path prefix cannot dodge a rule: a caller not allowed to pull docker.io/library/demo is
    refused before the upstream is asked anything, and an `ns` naming this registry reads local names."""
    before = len(world.hub.requests())
    reply = send(world.servers[server].url, "GET", path, caller(world, server, user, path), source=next_source())
    expect = status if server == "basic" else 401
    assert refused(world, reply, expect), (reply.status, reply.body[:300])
    assert b"library/demo" not in reply.body or reply.status != 200
    time.sleep(0.2)  # the upstream writes its access-log line just after answering
    assert world.hub.requests()[before:] == []


def test_an_ns_never_reaches_local_content(world: World) -> None:
    """A caller allowed only docker.io/** asking for secret/app with ns=docker.io reads the upstream's
    secret/app (which does not exist), never the local secret/app."""
    for server in ("basic", "token"):
        path = "/v2/secret/app/manifests/1?ns=docker.io"
        before = len(world.hub.requests())
        reply = send(world.servers[server].url, "GET", path, caller(world, server, "hubuser", path),
                     source=next_source())
        assert reply.status == 404 and world.secret_manifest not in reply.body
        world.hub.wait_request(lambda m, p: p == "/v2/secret/app/manifests/1", since=before)


def test_a_caller_allowed_the_cache_name_fills_it(world: World) -> None:
    """The positive control: hubuser (docker.io/**) pulls through both routes and the upstream is asked."""
    for server in ("basic", "token"):
        for path in ("/v2/library/demo/manifests/1?ns=docker.io", "/v2/docker.io/demo/manifests/1"):
            before = len(world.hub.requests())
            reply = send(world.servers[server].url, "GET", path, caller(world, server, "hubuser", path),
                         source=next_source())
            assert reply.status == 200 and reply.body == world.secret_manifest, (server, path, reply.status)
            if "ns=" in path:  # the first request of this server: a fill
                world.hub.wait_request(lambda m, p: p == "/v2/library/demo/manifests/1", since=before)


@pytest.mark.parametrize(("user", "path", "status"), CACHE_ATTACKS, ids=[p for _, p, _ in CACHE_ATTACKS])
def test_cache_rows_catch_a_permissive_registry(world: World, user: str | None, path: str, status: int) -> None:
    """Against a k3sreg without auth each cache row is served (or reaches the upstream), so the rows above fail
    on a registry that lets them in."""
    reply = send(world.servers["open"].url, "GET", path, source=next_source())
    assert not refused(world, reply, status)


@pytest.mark.parametrize("server", ["basic", "token"])
def test_catalog_lists_what_the_caller_may_pull(world: World, server: str) -> None:
    """The catalog shows admin every repository, reader only public/** and library/**, anonymous callers
    public/**; with tokens, the catalog scope is granted and the list filtered the same way."""
    url = world.servers[server].url
    seen = {}
    for user in ("admin", "reader", None):
        if server == "basic":
            headers = [("Authorization", basic(user))] if user else []
        else:
            headers = [("Authorization", "Bearer " + fetch_token(url, user, "registry:catalog:*"))]
        reply = send(url, "GET", "/v2/_catalog", headers, source=next_source())
        assert reply.status == 200, (user, reply.status)
        seen[user] = json.loads(reply.body)["repositories"]
    assert {"secret/app", "public/app"} <= set(seen["admin"])
    assert seen["reader"] == ["public/app"] and seen[None] == ["public/app"]


def test_failed_logins_are_limited_per_address(world: World) -> None:
    """After 10 failed logins an address gets 429 with Retry-After, even with the right password, before any
    password is checked; another address still logs in; the token service limits the same way."""
    url, attacker, bystander = world.servers["basic"].url, next_source(), next_source()
    wrong = [("Authorization", basic("admin", "guess"))]
    assert [send(url, "GET", "/v2/", wrong, source=attacker).status for _ in range(10)] == [401] * 10
    for headers in (wrong, [("Authorization", basic("admin"))]):
        reply = send(url, "GET", "/v2/", headers, source=attacker)
        assert reply.status == 429 and int(reply.headers["retry-after"]) >= 1
        assert json.loads(reply.body)["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert send(url, "GET", "/v2/", [("Authorization", basic("admin"))], source=bystander).status == 200
    token_url, attacker = world.servers["token"].url, next_source()
    statuses = [send(token_url, "GET", f"/auth/token?service={SERVICE}", wrong, source=attacker).status
                for _ in range(11)]
    assert statuses == [401] * 10 + [429]


def test_each_denial_is_one_log_line_with_user_address_repository_and_action(world: World) -> None:
    """A refused request logs one line naming the user, the client's address, the repository, the action and
    the reason; so does a refused login at the token service."""
    for server, headers, user, reason in (
            ("basic", [("Authorization", basic("admin", "nope"))], "admin", "wrong password"),
            ("basic", [("Authorization", basic("reader"))], "reader", "not allowed"),
            ("token", [], "-", "no credentials")):
        source = next_source()
        reply = send(world.servers[server].url, "DELETE", f"/v2/secret/app/manifests/{world.secret_digest}", headers,
                     source=source)
        assert reply.status in (401, 403)
        wanted = f"user={user} client={source} repository=secret/app action=delete reason="
        deadline = time.monotonic() + 5
        while not [line for line in world.servers[server].log_text().splitlines() if wanted in line]:
            assert time.monotonic() < deadline, wanted
            time.sleep(0.05)
        [line] = [line for line in world.servers[server].log_text().splitlines() if wanted in line]
        assert reason in line and f"request=DELETE /v2/secret/app/manifests/{world.secret_digest}" in line
    source = next_source()
    send(world.servers["token"].url, "GET", f"/auth/token?service={SERVICE}", [("Authorization", basic("ci", "x"))],
         source=source)
    deadline = time.monotonic() + 5
    while f"token refused: user=ci client={source}" not in world.servers["token"].log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_no_secret_in_any_log_line_or_process_argument(world: World) -> None:
    """After every attack of this module (passwords, Basic values and tokens known to the test), no k3sreg log
    line and no k3sreg process argument shows any of them, nor anything shaped like a token or a private key."""
    for name in ("basic", "token", "open"):
        server = world.servers[name]
        assert not leaks(server.log_text()), (name, leaks(server.log_text()))
        assert server.proc is not None
        for pid in [server.proc.pid, *children(server.proc.pid)]:
            assert not leaks(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    assert "denied:" in world.servers["basic"].log_text()  # the scan did read the denials


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (the workers)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_probes_and_metrics_need_no_credentials_and_name_nobody(world: World) -> None:
    """/debug/health and /metrics answer without credentials (Kubernetes probes, Prometheus); the metrics
    count denials by reason but name no user and no repository."""
    for server in ("basic", "token"):
        url = world.servers[server].url
        assert send(url, "GET", "/debug/health", source=next_source()).status == 200
        metrics = send(url, "GET", "/metrics", source=next_source())
        assert metrics.status == 200 and b"k3sreg_auth_denials_total" in metrics.body
        for name in ("admin", "reader", "hubuser", "secret/app", "public/app"):
            assert name.encode() not in metrics.body, name


def test_the_web_page_shows_each_caller_what_the_api_would(world: World) -> None:
    """The web page asks the same access control as the API: no credentials get the Basic challenge, the list
    shows only what the caller may pull, another repository's page is refused, and the delete button appears
    only with delete rights; the open registry shows everything to anyone."""
    url = world.servers["basic"].url
    anonymous = send(url, "GET", "/", source=next_source())
    assert anonymous.status == 401 and any(c.startswith("Basic ") for c in anonymous.challenges)
    assert b"secret/app" not in anonymous.body
    as_reader = [("Authorization", basic("reader"))]
    listing = send(url, "GET", "/", as_reader, source=next_source())
    assert listing.status == 200 and b"public/app" in listing.body and b"secret/app" not in listing.body
    assert send(url, "GET", "/repositories/secret/app", as_reader, source=next_source()).status == 403
    public = send(url, "GET", "/repositories/public/app", as_reader, source=next_source())
    assert public.status == 200 and b"_delete" not in public.body
    as_admin = [("Authorization", basic("admin"))]
    secret = send(url, "GET", "/repositories/secret/app", as_admin, source=next_source())
    assert secret.status == 200 and b"_delete" in secret.body
    everyone = send(world.servers["open"].url, "GET", "/", source=next_source())
    assert everyone.status == 200 and b"secret/app" in everyone.body
