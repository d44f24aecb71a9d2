"""The upstream client against real docker-registry 2.8.2 instances: anonymous, Bearer tokens, Basic, TLS, failures.

Peers, started once for this module and sharing one storage root seeded by skopeo:
  * ``plain``: anonymous docker-registry;
  * ``bearer``: docker-registry with ``auth: token`` (``tests.peers.token_issuer``) and the ``redirect`` storage
    middleware, so blob GETs answer 307 to ``cdn``, a file server on another port that records what it got;
  * ``basic``: docker-registry with ``auth: htpasswd`` (bcrypt, written by ``htpasswd -B``).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from k3sreg.client import RegistryClient
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import BlobUnknown, ManifestUnknown, Unauthorized, Unavailable
from k3sreg.oci.digest import Digest
from k3sreg.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.peers.images import TestLayout, build_layout, read_blob
from tests.peers.registry import DockerRegistry, free_port, write_self_signed
from tests.peers.skopeo import Skopeo
from tests.peers.token_issuer import TokenIssuer

USER, PASSWORD = "alice", "s3cret"


class Cdn:
    """Serves a registry's blob files by path on 127.0.0.1; records request headers; can fail or cut on demand.

    With `redirect_to` set it answers every GET and HEAD with a 307 to that base URL plus the same path instead.
    """

    def __init__(self, root: Path, redirect_to: str | None = None) -> None:
        self.root = root
        self.redirect_to = redirect_to
        self.headers: list[dict[str, str]] = []
        self.fail_next = 0  # answer this many requests with 503
        self.cut_after: int | None = None  # send this many body bytes, then drop the connection
        self.stall = 0.2  # seconds between those bytes and the drop
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                cdn.headers.append(dict(self.headers.items()))
                if cdn.redirect_to is not None:
                    self.send_response(307)
                    self.send_header("Location", cdn.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if cdn.fail_next:
                    cdn.fail_next -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = (cdn.root / self.path.split("?", 1)[0].lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if cdn.cut_after is None:
                    self.wfile.write(data)
                    return
                self.wfile.write(data[: cdn.cut_after])
                self.wfile.flush()
                time.sleep(cdn.stall)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> TestLayout:
    """A test image whose layers (256 KiB each) arrive in several chunks."""
    return build_layout(tmp_path_factory.mktemp("upstream-layout"), layers=2, layer_size=256 * 1024, seed=3)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, layout: TestLayout) -> Iterator[DockerRegistry]:
    """Anonymous docker-registry holding library/demo:1, library/demo:1-multi and org/app:1."""
    with DockerRegistry(tmp_path_factory.mktemp("upstream-plain")) as reg:
        skopeo = Skopeo()
        skopeo.copy(layout.oci_ref(), f"docker://{reg.host}/library/demo:1")
        skopeo.copy(layout.oci_ref(layout.multi_tag), f"docker://{reg.host}/library/demo:1-multi", all=True)
        skopeo.copy(layout.oci_ref(), f"docker://{reg.host}/org/app:1")
        yield reg


@pytest.fixture(scope="module")
def cdn(plain: DockerRegistry) -> Iterator[Cdn]:
    """The file server blob redirects point at."""
    server = Cdn(plain.root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    """The token service that the bearer registry trusts; knows alice."""
    with TokenIssuer(tmp_path_factory.mktemp("issuer"), users={USER: PASSWORD}) as service:
        yield service


@pytest.fixture(scope="module")
def bearer(
    tmp_path_factory: pytest.TempPathFactory, plain: DockerRegistry, issuer: TokenIssuer, cdn: Cdn
) -> Iterator[DockerRegistry]:
    """docker-registry with token auth, serving plain's content, redirecting blobs to the CDN."""
    config = {
        "auth": issuer.registry_auth(),
        "middleware": {"storage": [{"name": "redirect", "options": {"baseurl": cdn.url}}]},
    }
    with DockerRegistry(tmp_path_factory.mktemp("upstream-bearer"), root=plain.root, config=config) as reg:
        yield reg


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory, plain: DockerRegistry) -> Iterator[DockerRegistry]:
    """docker-registry with htpasswd (bcrypt) auth, serving plain's content."""
    workdir = tmp_path_factory.mktemp("upstream-basic")
    htpasswd = workdir / "htpasswd"
    line = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True).stdout
    htpasswd.write_text(line.strip() + "\n")
    config = {"auth": {"htpasswd": {"realm": "k3sreg-test", "path": str(htpasswd)}}}
    with DockerRegistry(workdir, root=plain.root, config=config) as reg:
        yield reg


def upstream(url: str, name: str = "upstream.test", **extra: Any) -> RegistryClient:
    """A client for `url` named `name`, with short retries so failures show quickly."""
    settings = UpstreamSettings.model_validate({"name": name, "url": url, "timeout": "5s", **extra})
    return RegistryClient(settings)


async def read_all(client: RegistryClient, repo: str, digest: str) -> tuple[bytes, int | None, int]:
    """(bytes, announced size, number of chunks) of a blob."""
    chunks: list[bytes] = []
    async with client.open_blob(repo, Digest.parse(digest)) as blob:
        async for chunk in blob:
            chunks.append(chunk)
    return b"".join(chunks), blob.size, len(chunks)


async def test_head_and_get_manifest_by_tag_and_digest(plain: DockerRegistry, layout: TestLayout) -> None:
    """HEAD and GET by tag and by digest give the pushed manifest (or index), its digest, type and size."""
    expected = read_blob(layout.root, layout.single.digest)
    async with upstream(plain.url) as client:
        head = await client.head_manifest("org/app", "1", [OCI_MANIFEST])
        assert (str(head.digest), head.media_type, head.size) == (layout.single.digest, OCI_MANIFEST, len(expected))
        by_tag = await client.get_manifest("org/app", "1", [OCI_MANIFEST])
        by_digest = await client.get_manifest("org/app", layout.single.digest, [OCI_MANIFEST])
        index = await client.get_manifest("library/demo", layout.index.digest, [OCI_INDEX, OCI_MANIFEST])
    for got in (by_tag, by_digest):
        assert (got.data, got.media_type, str(got.digest)) == (expected, OCI_MANIFEST, layout.single.digest)
    assert (str(index.digest), index.media_type) == (layout.index.digest, OCI_INDEX)
    assert index.data == read_blob(layout.root, layout.index.digest)


async def test_docker_hub_short_names_live_under_library(plain: DockerRegistry, layout: TestLayout) -> None:
    """For the upstream named docker.io, `demo` is fetched as `library/demo`."""
    async with upstream(plain.url, name="docker.io") as client:
        head = await client.head_manifest("demo", "1", [OCI_MANIFEST])
        data, _, _ = await read_all(client, "demo", layout.single.layers[0].digest)
    assert str(head.digest) == layout.single.digest
    assert data == read_blob(layout.root, layout.single.layers[0].digest)
    assert ("HEAD", "/v2/library/demo/manifests/1") in plain.requests()


async def test_open_blob_streams_the_exact_bytes(plain: DockerRegistry, layout: TestLayout) -> None:
    """A blob arrives in several chunks that add up to the pushed bytes, with its size announced."""
    layer = layout.single.layers[1]
    async with upstream(plain.url) as client:
        data, size, chunks = await read_all(client, "org/app", layer.digest)
    assert (data, size) == (read_blob(layout.root, layer.digest), layer.size)
    assert chunks > 1


async def test_unknown_manifest_and_blob(plain: DockerRegistry) -> None:
    """Upstream 404s become ManifestUnknown / BlobUnknown carrying the upstream's message."""
    missing = Digest.of(b"nothing here")
    async with upstream(plain.url) as client:
        with pytest.raises(ManifestUnknown, match="MANIFEST_UNKNOWN"):
            await client.get_manifest("org/app", "nope", [OCI_MANIFEST])
        with pytest.raises(ManifestUnknown, match=r"upstream\.test"):
            await client.head_manifest("org/app", "nope", [OCI_MANIFEST])
        with pytest.raises(BlobUnknown, match="BLOB_UNKNOWN"):
            async with client.open_blob("org/app", missing):
                pass


async def test_upstream_down_is_unavailable_quickly() -> None:
    """A refused connection gives Unavailable naming the upstream after the retries' short backoffs (0.1 + 0.2 s)."""
    started = time.monotonic()
    async with upstream(f"http://127.0.0.1:{free_port()}", retries=2) as client:
        with pytest.raises(Unavailable, match=r"upstream upstream\.test .*: HEAD /v2/org/app/manifests/1 failed "
                                              r"after 3 attempts: connection refused \(127\.0\.0\.1:\d+\)$"):
            await client.head_manifest("org/app", "1", [OCI_MANIFEST])
    assert time.monotonic() - started < 2.5  # no connect timeout or long backoff waited for


async def test_silent_upstream_times_out() -> None:
    """An upstream that accepts the connection but never answers gives Unavailable after `timeout`."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        async with upstream(url, timeout="300ms", retries=1) as client:
            with pytest.raises(Unavailable, match=r"upstream\.test"):
                await client.get_manifest("org/app", "1", [OCI_MANIFEST])
        assert 0.6 <= time.monotonic() - started < 3.0


async def test_bearer_refused_by_issuer(bearer: DockerRegistry, issuer: TokenIssuer) -> None:
    """Without credentials, or with a wrong password, the issuer refuses a token: Unauthorized, asked once."""
    before = len(issuer.requests)
    for creds in ({}, {"username": USER, "password": "wrong"}):
        async with upstream(bearer.url, **creds) as client:
            with pytest.raises(Unauthorized, match="token service"):
                await client.head_manifest("org/app", "1", [OCI_MANIFEST])
    assert issuer.requests[before:] == [(None, ["repository:org/app:pull"]), (USER, ["repository:org/app:pull"])]


async def test_bearer_with_credentials_reuses_tokens(
    bearer: DockerRegistry, issuer: TokenIssuer, layout: TestLayout
) -> None:
    """With credentials the token flow works, one token per repository serves every later request."""
    before = len(issuer.requests)
    async with upstream(bearer.url, username=USER, password=PASSWORD) as client:
        head = await client.head_manifest("org/app", "1", [OCI_MANIFEST])
        got = await client.get_manifest("org/app", layout.single.digest, [OCI_MANIFEST])
        await asyncio.gather(*(read_all(client, "org/app", d) for d in layout.single.blobs))
        assert issuer.requests[before:] == [(USER, ["repository:org/app:pull"])]
        await client.head_manifest("library/demo", "1", [OCI_MANIFEST])
        await client.head_manifest("library/demo", "1-multi", [OCI_INDEX])
    assert str(head.digest) == str(got.digest) == layout.single.digest
    assert issuer.requests[before:] == [(USER, ["repository:org/app:pull"]), (USER, ["repository:library/demo:pull"])]


async def test_concurrent_cold_requests_fetch_one_token(bearer: DockerRegistry, issuer: TokenIssuer) -> None:
    """Eight requests refused at once by the registry share one token fetch."""
    before = len(issuer.requests)
    async with upstream(bearer.url, username=USER, password=PASSWORD) as client:
        heads = await asyncio.gather(*(client.head_manifest("org/app", "1", [OCI_MANIFEST]) for _ in range(8)))
    assert len({str(h.digest) for h in heads}) == 1
    assert len(issuer.requests) - before == 1


async def test_token_without_access_is_unauthorized(bearer: DockerRegistry, issuer: TokenIssuer) -> None:
    """An anonymous token that grants nothing (Docker Hub's private repositories) ends in Unauthorized."""
    issuer.anonymous = True
    try:
        before = len(issuer.requests)
        async with upstream(bearer.url) as client:
            with pytest.raises(Unauthorized, match="UNAUTHORIZED"):
                await client.get_manifest("org/app", "1", [OCI_MANIFEST])
            assert issuer.requests[before:] == [(None, ["repository:org/app:pull"])]
            # The cached token goes first next time; once refused (insufficient_scope) a fresh one is tried.
            with pytest.raises(Unauthorized, match="UNAUTHORIZED"):
                await client.get_manifest("org/app", "1", [OCI_MANIFEST])
        assert issuer.requests[before:] == [(None, ["repository:org/app:pull"])] * 2
    finally:
        issuer.anonymous = False


async def test_bearer_access_token_field_and_expiry(bearer: DockerRegistry, issuer: TokenIssuer) -> None:
    """`access_token` answers work, and an expired token is fetched again."""
    issuer.field, issuer.lifetime = "access_token", 4  # used for 3 s (a margin of a quarter)
    try:
        before = len(issuer.requests)
        async with upstream(bearer.url, username=USER, password=PASSWORD) as client:
            await client.head_manifest("org/app", "1", [OCI_MANIFEST])
            await client.head_manifest("org/app", "1", [OCI_MANIFEST])
            assert len(issuer.requests) - before == 1
            await asyncio.sleep(3.1)
            await client.head_manifest("org/app", "1", [OCI_MANIFEST])
            assert len(issuer.requests) - before == 2
    finally:
        issuer.field, issuer.lifetime = "token", 300


async def test_blob_redirect_drops_authorization(bearer: DockerRegistry, cdn: Cdn, layout: TestLayout) -> None:
    """A blob redirected to another origin is fetched there without the Authorization header."""
    layer = layout.single.layers[0]
    cdn.headers.clear()
    async with upstream(bearer.url, username=USER, password=PASSWORD) as client:
        data, size, _ = await read_all(client, "org/app", layer.digest)
    assert (data, size) == (read_blob(layout.root, layer.digest), layer.size)
    assert len(cdn.headers) == 1
    assert "authorization" not in {key.lower() for key in cdn.headers[0]}
    assert any(m == "GET" and p.startswith("/v2/org/app/blobs/") for m, p in bearer.requests())


async def test_redirect_to_another_registry_gets_its_own_token(
    plain: DockerRegistry, bearer: DockerRegistry, issuer: TokenIssuer, cdn: Cdn, layout: TestLayout
) -> None:
    """A redirect to another registry (as registry.k8s.io does) gets that host's token, fetched without our creds."""
    front = Cdn(plain.root, redirect_to=bearer.url)
    issuer.grant_anonymous = True
    cdn.headers.clear()
    before = len(issuer.requests)
    try:
        async with upstream(front.url, username=USER, password=PASSWORD) as client:
            head = await client.head_manifest("org/app", "1", [OCI_MANIFEST])
            data, _, _ = await read_all(client, "org/app", layout.single.layers[0].digest)
    finally:
        issuer.grant_anonymous = False
        front.stop()
    assert str(head.digest) == layout.single.digest
    assert data == read_blob(layout.root, layout.single.layers[0].digest)
    assert issuer.requests[before:] == [(None, ["repository:org/app:pull"])]
    assert not any("authorization" in {k.lower() for k in h} for h in front.headers + cdn.headers)


async def test_cut_blob_raises_from_the_iterator(bearer: DockerRegistry, cdn: Cdn, layout: TestLayout) -> None:
    """A connection cut half-way through a blob raises Unavailable after the first bytes; a retry succeeds."""
    layer = layout.single.layers[1]
    received = 0
    cdn.cut_after = layer.size // 2
    try:
        async with upstream(bearer.url, username=USER, password=PASSWORD) as client:
            with pytest.raises(Unavailable, match=r"broke off after \d+ bytes"):
                async with client.open_blob("org/app", Digest.parse(layer.digest)) as blob:
                    async for chunk in blob:
                        received += len(chunk)
            assert 0 < received <= layer.size // 2
            cdn.cut_after = None
            data, _, _ = await read_all(client, "org/app", layer.digest)
    finally:
        cdn.cut_after = None
    assert data == read_blob(layout.root, layer.digest)


async def test_stalled_blob_times_out_in_the_iterator(bearer: DockerRegistry, cdn: Cdn, layout: TestLayout) -> None:
    """A blob whose bytes stop coming raises Unavailable after `timeout`, not after the whole stall."""
    layer = layout.single.layers[0]
    cdn.cut_after, cdn.stall = 1024, 4.0
    try:
        async with upstream(bearer.url, username=USER, password=PASSWORD, timeout="1s") as client:
            started = time.monotonic()
            with pytest.raises(Unavailable, match="broke off after 1024 bytes: no data for 1 s"):
                await read_all(client, "org/app", layer.digest)
            assert time.monotonic() - started < 3.5
    finally:
        cdn.cut_after, cdn.stall = None, 0.2


async def test_5xx_is_retried_then_reported(bearer: DockerRegistry, cdn: Cdn, layout: TestLayout) -> None:
    """503s are retried `retries` times; when they persist the error is Unavailable naming the status."""
    digest = layout.single.config.digest
    try:
        cdn.fail_next = 2
        async with upstream(bearer.url, username=USER, password=PASSWORD, retries=2) as client:
            data, _, _ = await read_all(client, "org/app", digest)
        assert data == read_blob(layout.root, digest)
        cdn.fail_next = 1
        async with upstream(bearer.url, username=USER, password=PASSWORD, retries=0) as client:
            with pytest.raises(Unavailable, match="HTTP 503"):
                await read_all(client, "org/app", digest)
    finally:
        cdn.fail_next = 0


async def test_basic_auth(basic: DockerRegistry, layout: TestLayout) -> None:
    """htpasswd upstream: credentials are sent after the Basic challenge; none or wrong ones are Unauthorized."""
    async with upstream(basic.url, username=USER, password=PASSWORD) as client:
        got = await client.get_manifest("org/app", "1", [OCI_MANIFEST])
        data, _, _ = await read_all(client, "org/app", layout.single.layers[0].digest)
    assert str(got.digest) == layout.single.digest
    assert data == read_blob(layout.root, layout.single.layers[0].digest)
    for creds in ({}, {"username": USER, "password": "wrong"}):
        async with upstream(basic.url, **creds) as client:
            with pytest.raises(Unauthorized):
                await client.head_manifest("org/app", "1", [OCI_MANIFEST])


class MutualTLSRegistry(DockerRegistry):
    """docker-registry over TLS that demands a client certificate; its readiness probe presents one."""

    def __init__(self, workdir: Path, root: Path, client: tuple[Path, Path]) -> None:
        server = write_self_signed(workdir / "server")
        super().__init__(workdir, root=root, tls=server, config={"http": {"tls": {"clientcas": [str(client[0])]}}})
        self.client = client

    def _ping(self) -> bool:
        assert self.tls is not None
        context = ssl.create_default_context(cafile=str(self.tls[0]))
        context.load_cert_chain(*self.client)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=1, context=context)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()


async def test_tls_ca_skip_verify_and_client_certificate(
    tmp_path: Path, plain: DockerRegistry, layout: TestLayout
) -> None:
    """An https upstream is trusted through `tls.ca` or `insecureskipverify`, with the client certificate it asks."""
    client_cert, client_key = write_self_signed(tmp_path / "client", hosts=("k3sreg-client",))
    identity = {"certificate": str(client_cert), "key": str(client_key)}
    with MutualTLSRegistry(tmp_path / "registry", plain.root, (client_cert, client_key)) as reg:
        assert reg.tls is not None and reg.url.startswith("https://")
        for tls in ({"ca": str(reg.tls[0]), **identity}, {"insecureskipverify": True, **identity}):
            async with upstream(reg.url, tls=tls) as client:
                head = await client.head_manifest("org/app", "1", [OCI_MANIFEST])
            assert str(head.digest) == layout.single.digest
        for tls, reason in (({**identity}, "certificate verify failed"), ({"ca": str(reg.tls[0])}, "BAD_CERTIFICATE")):
            async with upstream(reg.url, tls=tls, retries=0) as client:
                with pytest.raises(Unavailable, match=reason):
                    await client.head_manifest("org/app", "1", [OCI_MANIFEST])


async def test_manifest_bytes_that_do_not_match_their_digest(
    tmp_path: Path, plain: DockerRegistry, layout: TestLayout
) -> None:
    """A registry serving manifest bytes that do not hash to their digest (a corrupted store) is Unavailable."""
    root = tmp_path / "data"
    shutil.copytree(plain.root, root)
    hexpart = layout.single.digest.split(":", 1)[1]
    data_file = root / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"
    data_file.write_text(json.dumps(json.loads(data_file.read_bytes()), indent=1))  # same manifest, other bytes
    with DockerRegistry(tmp_path / "corrupt", root=root) as reg:
        async with upstream(reg.url) as client:
            for reference in ("1", layout.single.digest):
                with pytest.raises(Unavailable, match="does not match the digest"):
                    await client.get_manifest("org/app", reference, [OCI_MANIFEST])
