"""OCI Distribution v1.1 "pull" workflow against a running ``k3sreg serve``: blobs and manifests by GET and HEAD.

What the spec's pull section and the conformance suite's pull checks demand, in our own tests: exact bytes,
``Content-Length``/``Content-Type``/``Docker-Content-Digest`` on GET and HEAD, byte ranges, 404 with the right
code for unknown things, and OCI JSON error bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.integration.oci_client import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Document,
    PushedImage,
    RegistryClient,
    assert_error,
    connect,
    filler,
    image_index,
    image_manifest,
    run_with_client,
    serve_k3sreg,
    sha256,
)
from tests.peers.registry import K3sregServer

REPO = "conformance/pull"
ACCEPT_ALL = ", ".join(
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json"]
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """One k3sreg for this module."""
    with serve_k3sreg(tmp_path_factory.mktemp("conformance-pull")) as srv:
        yield srv


@pytest.fixture(scope="module")
def image(server: K3sregServer) -> PushedImage:
    """An OCI image (config and two layers) tagged ``v1`` in ``REPO``."""
    return run_with_client(server.url, lambda c: c.push_image(REPO, "v1", layer_size=5000))


@pytest.fixture
async def client(server: K3sregServer) -> AsyncIterator[RegistryClient]:
    """A client of the module's server."""
    async with connect(server.url) as c:
        yield c


async def test_base_endpoint_answers_200_with_api_version(client: RegistryClient) -> None:
    """GET /v2/ is 200 and names the API version, so clients know the registry speaks v2."""
    reply = await client.request("GET", "/v2/")
    assert reply.status == 200
    assert reply.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_blob_get_returns_exact_bytes_and_headers(client: RegistryClient, image: PushedImage) -> None:
    """GET of a blob is 200 with its bytes, the exact Content-Length and a matching Docker-Content-Digest."""
    layer = image.layers[0]
    reply = await client.request("GET", f"/v2/{REPO}/blobs/{layer.digest}")
    assert reply.status == 200
    assert reply.body == layer.data
    assert reply.headers["Content-Length"] == str(len(layer.data))
    assert reply.headers["Docker-Content-Digest"] == layer.digest


async def test_blob_head_has_size_and_digest_but_no_body(client: RegistryClient, image: PushedImage) -> None:
    """HEAD of a blob is 200 with Content-Length of the blob, its digest, and an empty body."""
    config = image.config
    reply = await client.request("HEAD", f"/v2/{REPO}/blobs/{config.digest}")
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["Content-Length"] == str(len(config.data))
    assert reply.headers["Docker-Content-Digest"] == config.digest


async def test_unknown_blob_is_404_blob_unknown(client: RegistryClient, image: PushedImage) -> None:
    """GET and HEAD of a blob the repository does not have are 404; GET says BLOB_UNKNOWN."""
    missing = sha256(b"never pushed")
    assert_error(await client.request("GET", f"/v2/{REPO}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    head = await client.request("HEAD", f"/v2/{REPO}/blobs/{missing}")
    assert head.status == 404 and head.body == b""


async def test_blob_of_another_repository_is_not_served(client: RegistryClient, image: PushedImage) -> None:
    """A blob pushed to one repository is 404 BLOB_UNKNOWN through another (repositories are isolated)."""
    await client.push_image("conformance/pull-other", "x")
    assert_error(
        await client.request("GET", f"/v2/conformance/pull-other/blobs/{image.layers[0].digest}"), 404, "BLOB_UNKNOWN"
    )


async def test_blob_range_request_is_206(client: RegistryClient, image: PushedImage) -> None:
    """A satisfiable Range on a blob is 206 with exactly those bytes and a Content-Range naming the total."""
    layer = image.layers[1]
    size = len(layer.data)
    reply = await client.request("GET", f"/v2/{REPO}/blobs/{layer.digest}", headers={"Range": "bytes=10-99"})
    assert reply.status == 206
    assert reply.body == layer.data[10:100]
    assert reply.headers["Content-Range"] == f"bytes 10-99/{size}"
    assert reply.headers["Content-Length"] == "90"


async def test_unsatisfiable_blob_range_is_416(client: RegistryClient, image: PushedImage) -> None:
    """A Range starting past the end of the blob is 416."""
    layer = image.layers[1]
    reply = await client.request(
        "GET", f"/v2/{REPO}/blobs/{layer.digest}", headers={"Range": f"bytes={len(layer.data) + 10}-"}
    )
    assert reply.status == 416


@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_manifest_get_returns_pushed_bytes(client: RegistryClient, image: PushedImage, by: str) -> None:
    """GET of a manifest by tag or digest returns the pushed bytes with their media type, size and digest."""
    ref = image.tag if by == "tag" else image.manifest.digest
    reply = await client.request("GET", f"/v2/{REPO}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    assert reply.status == 200
    assert reply.body == image.manifest.body
    assert reply.headers["Content-Type"] == OCI_MANIFEST
    assert reply.headers["Content-Length"] == str(len(image.manifest.body))
    assert reply.headers["Docker-Content-Digest"] == image.manifest.digest


@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_manifest_head_matches_get(client: RegistryClient, image: PushedImage, by: str) -> None:
    """HEAD of a manifest is 200 with the same Content-Length, Content-Type and digest as GET, and no body."""
    ref = image.tag if by == "tag" else image.manifest.digest
    reply = await client.request("HEAD", f"/v2/{REPO}/manifests/{ref}", headers={"Accept": ACCEPT_ALL})
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["Content-Type"] == OCI_MANIFEST
    assert reply.headers["Content-Length"] == str(len(image.manifest.body))
    assert reply.headers["Docker-Content-Digest"] == image.manifest.digest


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_unknown_tag_is_404(client: RegistryClient, image: PushedImage, method: str) -> None:
    """GET or HEAD of a tag that was never pushed is 404 (GET: MANIFEST_UNKNOWN)."""
    reply = await client.request(method, f"/v2/{REPO}/manifests/no-such-tag")
    if method == "GET":
        assert_error(reply, 404, "MANIFEST_UNKNOWN")
    else:
        assert reply.status == 404


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_unknown_manifest_digest_is_404(client: RegistryClient, image: PushedImage, method: str) -> None:
    """GET or HEAD of a well-formed digest that is not a manifest here is 404 (GET: MANIFEST_UNKNOWN)."""
    reply = await client.request(method, f"/v2/{REPO}/manifests/{sha256(b'no such manifest')}")
    if method == "GET":
        assert_error(reply, 404, "MANIFEST_UNKNOWN")
    else:
        assert reply.status == 404


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_reference_that_cannot_exist_is_404(client: RegistryClient, image: PushedImage, method: str) -> None:
    """A reference that is neither a tag nor a digest (leading dot) names no manifest: 404, as the suite checks."""
    reply = await client.request(method, f"/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME")
    assert reply.status == 404, (reply.status, reply.body[:300])


async def test_malformed_digest_reference_has_oci_error_body(client: RegistryClient, image: PushedImage) -> None:
    """A manifest GET with a malformed digest is 400 or 404 with an OCI JSON error body using a spec code."""
    reply = await client.request("GET", f"/v2/{REPO}/manifests/sha256:totallywrong")
    assert reply.status in (400, 404)
    assert_error(reply, reply.status, "DIGEST_INVALID", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "TAG_INVALID")


async def test_manifest_of_unknown_repository_is_404(client: RegistryClient) -> None:
    """A manifest in a repository that does not exist is 404 (NAME_UNKNOWN or MANIFEST_UNKNOWN)."""
    reply = await client.request("GET", "/v2/conformance/never-created/manifests/latest")
    assert_error(reply, 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")


async def test_docker_schema2_manifest_is_served_unchanged(client: RegistryClient) -> None:
    """A Docker v2 schema 2 manifest comes back byte for byte with its own media type and digest."""
    repo = "conformance/pull-docker"
    config = Blob(b'{"architecture":"arm64","os":"linux"}', DOCKER_CONFIG)
    layer = Blob(filler("docker layer", 1500), DOCKER_LAYER)
    for blob in (config, layer):
        await client.push_blob(repo, blob)
    manifest = image_manifest(config, [layer], media_type=DOCKER_MANIFEST)
    assert (await client.put_manifest(repo, "d1", manifest)).status == 201
    reply = await client.request("GET", f"/v2/{repo}/manifests/d1", headers={"Accept": ACCEPT_ALL})
    assert reply.status == 200
    assert reply.body == manifest.body
    assert reply.headers["Content-Type"] == DOCKER_MANIFEST
    assert reply.headers["Docker-Content-Digest"] == manifest.digest


async def test_index_is_served_with_index_media_type(client: RegistryClient, image: PushedImage) -> None:
    """An OCI index pushed over existing manifests is pulled by tag with the index media type and exact bytes."""
    index = image_index([image.manifest])
    assert (await client.put_manifest(REPO, "multi", index)).status == 201
    reply = await client.request("GET", f"/v2/{REPO}/manifests/multi", headers={"Accept": OCI_INDEX})
    assert reply.status == 200
    assert reply.body == index.body
    assert reply.headers["Content-Type"] == OCI_INDEX
    head = await client.request("HEAD", f"/v2/{REPO}/manifests/{index.digest}", headers={"Accept": OCI_INDEX})
    assert head.status == 200 and head.headers["Content-Length"] == str(len(index.body))


async def test_manifest_pulled_by_digest_hashes_to_that_digest(client: RegistryClient, image: PushedImage) -> None:
    """Every manifest a client pulls by digest verifies against that digest (the registry never rewrites)."""
    extra = Document(image_manifest(image.config, image.layers[:1], annotations={"k": "v"}).body, OCI_MANIFEST)
    assert (await client.put_manifest(REPO, extra.digest, extra)).status == 201
    for doc in (image.manifest, extra):
        reply = await client.request("GET", f"/v2/{REPO}/manifests/{doc.digest}", headers={"Accept": ACCEPT_ALL})
        assert reply.status == 200 and sha256(reply.body) == doc.digest
