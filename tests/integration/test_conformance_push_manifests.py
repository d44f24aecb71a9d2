"""OCI Distribution v1.1 "push" workflow against a running ``k3sreg serve``, part 2: manifests.

Manifest pushes by tag and by digest, re-tagging, no layers, the empty config of an artifact, a ``subject``
(``OCI-Subject``, also before the subject exists), exact bytes, and the refusals (missing blobs or child
manifests, a digest that is not the body's, bytes that are not JSON).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.integration.oci_client import (
    EMPTY_JSON,
    EMPTY_JSON_DIGEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_MANIFEST,
    Blob,
    RegistryClient,
    assert_error,
    connect,
    image_index,
    image_manifest,
    serve_k3sreg,
    sha256,
)
from tests.peers.registry import K3sregServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """One k3sreg for this module."""
    with serve_k3sreg(tmp_path_factory.mktemp("conformance-push-manifests")) as srv:
        yield srv


@pytest.fixture
async def client(server: K3sregServer) -> AsyncIterator[RegistryClient]:
    """A client of the module's server."""
    async with connect(server.url) as c:
        yield c


async def test_manifest_put_by_tag_and_by_digest(client: RegistryClient) -> None:
    """PUT of a manifest by tag and by digest is 201 with Location and the canonical Docker-Content-Digest."""
    repo = "conformance/push-manifest"
    image = await client.push_image(repo, "t1")
    again = await client.put_manifest(repo, "t2", image.manifest)
    assert again.status == 201
    assert again.headers["Docker-Content-Digest"] == image.manifest.digest
    assert again.location
    by_digest = await client.put_manifest(repo, image.manifest.digest, image.manifest)
    assert by_digest.status == 201
    assert client.url(by_digest.location).endswith(f"/v2/{repo}/manifests/{image.manifest.digest}")
    pulled = await client.request("GET", again.location, headers={"Accept": OCI_MANIFEST})
    assert pulled.status == 200 and pulled.body == image.manifest.body


async def test_tag_moves_to_the_last_manifest_pushed(client: RegistryClient) -> None:
    """Pushing another manifest under an existing tag moves the tag; the old manifest stays pullable by digest."""
    repo = "conformance/push-retag"
    old = await client.push_image(repo, "moving", seed="old")
    new = await client.push_image(repo, "other", seed="new")
    assert (await client.put_manifest(repo, "moving", new.manifest)).status == 201
    moved = await client.request("GET", f"/v2/{repo}/manifests/moving", headers={"Accept": OCI_MANIFEST})
    assert moved.body == new.manifest.body and moved.headers["Docker-Content-Digest"] == new.manifest.digest
    kept = await client.request("GET", f"/v2/{repo}/manifests/{old.manifest.digest}", headers={"Accept": OCI_MANIFEST})
    assert kept.status == 200 and kept.body == old.manifest.body


async def test_manifest_with_no_layers_is_accepted(client: RegistryClient) -> None:
    """A manifest with an empty ``layers`` list is 201 and pulled back unchanged (the suite's empty-layer push)."""
    repo = "conformance/push-manifest"
    config = Blob(b'{"empty":"layers"}', OCI_CONFIG)
    await client.push_blob(repo, config)
    manifest = image_manifest(config, [])
    reply = await client.put_manifest(repo, "emptylayer", manifest)
    assert reply.status == 201
    pulled = await client.request("GET", f"/v2/{repo}/manifests/emptylayer", headers={"Accept": OCI_MANIFEST})
    assert pulled.body == manifest.body


async def test_artifact_with_empty_json_config(client: RegistryClient) -> None:
    """An artifact whose config is the empty descriptor ({} as application/vnd.oci.empty.v1+json) is accepted."""
    repo = "conformance/push-artifact"
    empty = Blob(EMPTY_JSON, OCI_EMPTY)
    assert empty.digest == EMPTY_JSON_DIGEST
    payload = Blob(b"signature bytes", "application/vnd.example.signature")
    for blob in (empty, payload):
        await client.push_blob(repo, blob)
    manifest = image_manifest(empty, [payload], artifact_type="application/vnd.example.sig.v1")
    reply = await client.put_manifest(repo, "sig", manifest)
    assert reply.status == 201
    head = await client.request("HEAD", f"/v2/{repo}/blobs/{EMPTY_JSON_DIGEST}")
    assert head.status == 200 and head.headers["Content-Length"] == "2"


async def test_manifest_with_subject_answers_oci_subject(client: RegistryClient) -> None:
    """A manifest with a ``subject`` is 201 with ``OCI-Subject: <digest>``, even before the subject is pushed."""
    repo = "conformance/push-subject"
    image = await client.push_image(repo, "base")
    empty = Blob(EMPTY_JSON, OCI_EMPTY)
    await client.push_blob(repo, empty)
    referrer = image_manifest(empty, [], subject=image.manifest, artifact_type="application/vnd.example.sbom")
    reply = await client.put_manifest(repo, referrer.digest, referrer)
    assert reply.status == 201
    assert reply.headers["OCI-Subject"] == image.manifest.digest
    ghost = image_manifest(Blob(b'{"ghost":1}', OCI_CONFIG), [])
    orphan = image_manifest(empty, [], subject=ghost, artifact_type="application/vnd.example.sbom")
    reply = await client.put_manifest(repo, orphan.digest, orphan)
    assert reply.status == 201
    assert reply.headers["OCI-Subject"] == ghost.digest


async def test_manifest_without_subject_has_no_oci_subject(client: RegistryClient) -> None:
    """A manifest without ``subject`` gets no OCI-Subject header."""
    image = await client.push_image("conformance/push-subject", "plain")
    reply = await client.put_manifest("conformance/push-subject", "plain2", image.manifest)
    assert reply.status == 201 and "OCI-Subject" not in reply.headers


async def test_manifest_referencing_missing_blob_is_refused(client: RegistryClient) -> None:
    """A manifest whose layer was never pushed is 400 MANIFEST_BLOB_UNKNOWN and the tag stays unknown."""
    repo = "conformance/push-bad"
    config = Blob(b'{"missing":"layer"}', OCI_CONFIG)
    await client.push_blob(repo, config)
    manifest = image_manifest(config, [Blob(b"never uploaded")])
    assert_error(await client.put_manifest(repo, "broken", manifest), 400, "MANIFEST_BLOB_UNKNOWN")
    assert (await client.request("HEAD", f"/v2/{repo}/manifests/broken")).status == 404


async def test_index_referencing_missing_manifest_is_refused(client: RegistryClient) -> None:
    """An index over a manifest that is not in the repository is 400 MANIFEST_BLOB_UNKNOWN."""
    image = await client.push_image("conformance/push-index", "one")
    ghost = image_manifest(Blob(b'{"not":"pushed"}', OCI_CONFIG), [])
    assert (await client.put_manifest("conformance/push-index", "ok", image_index([image.manifest]))).status == 201
    bad = image_index([image.manifest, ghost])
    assert_error(await client.put_manifest("conformance/push-index", "bad", bad), 400, "MANIFEST_BLOB_UNKNOWN")


async def test_manifest_put_by_wrong_digest_is_refused(client: RegistryClient) -> None:
    """A manifest PUT under a digest that is not the body's is 400 (DIGEST_INVALID) and is not stored."""
    image = await client.push_image("conformance/push-bad", "d")
    wrong = sha256(b"other bytes")
    reply = await client.put_manifest("conformance/push-bad", wrong, image.manifest)
    assert_error(reply, 400, "DIGEST_INVALID", "MANIFEST_INVALID")
    assert (await client.request("HEAD", f"/v2/conformance/push-bad/manifests/{wrong}")).status == 404


async def test_invalid_manifest_json_is_manifest_invalid(client: RegistryClient) -> None:
    """A manifest body that is not JSON is 400 MANIFEST_INVALID with an OCI error body."""
    reply = await client.request(
        "PUT", "/v2/conformance/push-bad/manifests/junk", body=b"blablabla", headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(reply, 400, "MANIFEST_INVALID")


async def test_manifest_bytes_are_stored_exactly(client: RegistryClient) -> None:
    """Unusual but valid JSON formatting (key order, spacing) survives a push and pull byte for byte."""
    repo = "conformance/push-manifest"
    config = Blob(b'{"fmt":1}', OCI_CONFIG)
    await client.push_blob(repo, config)
    doc = {"layers": [], "config": config.descriptor(), "mediaType": OCI_MANIFEST, "schemaVersion": 2}
    body = json.dumps(doc, separators=(" ,", ":  ")).encode() + b"\n"
    reply = await client.request("PUT", f"/v2/{repo}/manifests/odd", body=body, headers={"Content-Type": OCI_MANIFEST})
    assert reply.status == 201 and reply.headers["Docker-Content-Digest"] == sha256(body)
    pulled = await client.request("GET", f"/v2/{repo}/manifests/odd", headers={"Accept": OCI_MANIFEST})
    assert pulled.body == body
