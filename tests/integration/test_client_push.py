"""The registry client's pushes against real registries: docker-registry 2.8.2 and k3sreg, anonymous, and
docker-registry with token auth (``tests.peers.token_issuer``).

Each test pushes a small image (a config, a 1.5 MiB layer) with ``RegistryClient``, then reads it back through
the same registry, and skopeo inspects it as a third party would.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from k3sreg.client import RegistryClient
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import Unavailable
from k3sreg.oci.digest import Digest
from k3sreg.oci.mediatypes import OCI_MANIFEST
from tests.peers.registry import IMPLS, DockerRegistry, RegistryProcess, make_registry
from tests.peers.skopeo import Skopeo
from tests.peers.token_issuer import TokenIssuer

USER, PASSWORD = "alice", "s3cret"
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
LAYER = os.urandom(1536 * 1024)
CHUNK = 512 * 1024


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": OCI_MANIFEST,
    "config": descriptor("application/vnd.oci.image.config.v1+json", CONFIG),
    "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", LAYER)],
}).encode()


def stream(data: bytes, piece: int = 100_000) -> AsyncIterator[bytes]:
    """`data` in pieces that do not line up with CHUNK, as a file read would give it."""

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), piece):
            yield data[start:start + piece]

    return pieces()


def client(url: str, **extra: Any) -> RegistryClient:
    settings = UpstreamSettings.model_validate({"name": "target.test", "url": url, "timeout": "10s", **extra})
    return RegistryClient(settings)


@pytest.fixture(scope="module", params=IMPLS)
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """An anonymous registry of each implementation."""
    with make_registry(request.param, tmp_path_factory.mktemp(f"push-{request.param}")) as reg:
        yield reg


async def push_image(c: RegistryClient, repo: str, chunk_size: int | None) -> Digest:
    """Push CONFIG, LAYER and MANIFEST to `repo` (the layer in chunks when `chunk_size` is set)."""
    for data in (CONFIG, LAYER):
        assert await c.push_blob(repo, Digest.of(data), len(data), lambda d=data: stream(d), chunk_size=chunk_size)
    return await c.put_manifest(repo, "1", MANIFEST, OCI_MANIFEST)


async def read_back(c: RegistryClient, repo: str) -> bytes:
    async with c.open_blob(repo, Digest.of(LAYER)) as blob:
        return b"".join([chunk async for chunk in blob])


@pytest.mark.parametrize("chunk_size", [None, CHUNK], ids=["monolithic", "chunked"])
async def test_push_then_pull(registry: RegistryProcess, chunk_size: int | None) -> None:
    """Blobs uploaded in one PUT or in PATCHes, then the manifest by tag: the registry serves them back, the
    digest it names is the manifest's, and skopeo sees the image."""
    repo = f"push/{'whole' if chunk_size is None else 'chunks'}"
    async with client(registry.url) as c:
        assert not await c.has_blob(repo, Digest.of(LAYER))
        digest = await push_image(c, repo, chunk_size)
        assert digest == Digest.of(MANIFEST)
        assert await c.has_blob(repo, Digest.of(LAYER))
        fetched = await c.get_manifest(repo, "1", [OCI_MANIFEST])
        assert (fetched.data, fetched.digest) == (MANIFEST, digest)
        assert await read_back(c, repo) == LAYER
    patches = [p for m, p in registry.requests() if m == "PATCH" and f"/v2/{repo}/" in p]
    assert len(patches) == (0 if chunk_size is None else 1 + 3)  # the config in one chunk, the layer in three
    inspected = Skopeo().inspect(f"docker://{registry.host}/{repo}:1")
    assert inspected["Digest"] == str(digest)


async def test_blobs_already_there_are_not_sent_again_and_mounts(registry: RegistryProcess) -> None:
    """A blob the repository holds is found by HEAD and not uploaded; one another repository holds is mounted
    from it (no upload session, no PUT of bytes)."""
    async with client(registry.url) as c:
        await push_image(c, "mount/source", None)
        registry.wait_for("PUT", "/v2/mount/source/manifests/1")  # the access log may lag the answer
        before = len(registry.requests())
        assert not await c.push_blob("mount/source", Digest.of(LAYER), len(LAYER), lambda: stream(LAYER))
        assert not await c.push_blob("mount/target", Digest.of(LAYER), len(LAYER), lambda: stream(LAYER),
                                     mount_from="mount/source")
        assert await read_back(c, "mount/target") == LAYER
    registry.wait_request(lambda m, p: m == "GET" and p.startswith("/v2/mount/target/blobs/"), since=before)
    made = [(m, p.split("?")[0]) for m, p in registry.requests()[before:] if m != "GET"]
    assert made == [("HEAD", f"/v2/mount/source/blobs/{Digest.of(LAYER)}"),
                    ("HEAD", f"/v2/mount/target/blobs/{Digest.of(LAYER)}"),
                    ("POST", "/v2/mount/target/blobs/uploads/")]


async def test_a_wrong_digest_is_refused_and_reported(registry: RegistryProcess) -> None:
    """Bytes that do not hash to the digest named: the registry refuses the upload, the client says so."""
    wrong = Digest.of(b"something else")
    async with client(registry.url, retries=0) as c:
        with pytest.raises(Unavailable, match="DIGEST_INVALID"):
            await c.push_blob("push/wrong", wrong, len(LAYER), lambda: stream(LAYER))
        assert not await c.has_blob("push/wrong", wrong)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DockerRegistry, TokenIssuer]]:
    """docker-registry with token auth; the issuer knows alice and grants what she asks."""
    work = tmp_path_factory.mktemp("push-token")
    with TokenIssuer(work / "issuer", users={USER: PASSWORD}) as issuer, \
            DockerRegistry(work / "registry", config={"auth": issuer.registry_auth()}) as reg:
        yield reg, issuer


async def test_push_with_token_auth(token_registry: tuple[DockerRegistry, TokenIssuer], tmp_path: Path) -> None:
    """With token auth the push asks for `pull,push` once per repository (the mount also for its source), and
    the streamed uploads carry the token from the start (they are never re-sent)."""
    reg, issuer = token_registry
    before = len(issuer.requests)
    async with client(reg.url, username=USER, password=PASSWORD) as c:
        digest = await push_image(c, "secure/app", CHUNK)
        assert not await c.push_blob("secure/copy", Digest.of(LAYER), len(LAYER), lambda: stream(LAYER),
                                     mount_from="secure/app")
        fetched = await c.get_manifest("secure/app", "1", [OCI_MANIFEST])
    assert fetched.digest == digest
    scopes = [scopes for _, scopes in issuer.requests[before:]]
    assert scopes[0] == ["repository:secure/app:pull", "repository:secure/app:pull,push"]
    assert ["repository:secure/copy:pull,push", "repository:secure/app:pull"] in scopes
    uploads = [(m, p) for m, p in reg.requests() if m in ("PATCH", "PUT") and "/blobs/uploads/" in p]
    assert len(uploads) == (1 + 1) + (3 + 1)  # PATCHes and the closing PUT: the config's, then the layer's
