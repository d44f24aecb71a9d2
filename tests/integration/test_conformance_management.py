"""OCI Distribution v1.1 "content management" workflow against a running ``k3sreg serve``: deletes.

Deleting a tag (202; the manifest stays), a manifest by digest (202; every tag to it goes, later requests are 404),
a blob (202; 404 after), unknown things (404 with the right code), a referrer (it leaves the referrers list), and
a second server with ``storage.delete.enabled: false`` where every delete is 405 UNSUPPORTED and nothing changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.integration.oci_client import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_MANIFEST,
    Blob,
    RegistryClient,
    assert_error,
    connect,
    filler,
    image_manifest,
    serve_k3sreg,
    sha256,
)
from tests.peers.registry import K3sregServer

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """One k3sreg with deletes enabled for this module."""
    with serve_k3sreg(tmp_path_factory.mktemp("conformance-management")) as srv:
        yield srv


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """One k3sreg with ``storage.delete.enabled: false``."""
    with serve_k3sreg(tmp_path_factory.mktemp("conformance-no-delete"), delete_enabled=False) as srv:
        yield srv


@pytest.fixture
async def client(server: K3sregServer) -> AsyncIterator[RegistryClient]:
    """A client of the deletes-enabled server."""
    async with connect(server.url) as c:
        yield c


@pytest.fixture
async def locked(locked_server: K3sregServer) -> AsyncIterator[RegistryClient]:
    """A client of the deletes-disabled server."""
    async with connect(locked_server.url) as c:
        yield c


async def tags_of(client: RegistryClient, repo: str) -> list[str]:
    """The repository's tags ([] when the list is empty or the repository is gone)."""
    reply = await client.request("GET", f"/v2/{repo}/tags/list")
    if reply.status == 404:
        return []
    assert reply.status == 200
    tags: list[str] = reply.json()["tags"] or []
    return tags


async def test_delete_tag_keeps_the_manifest(client: RegistryClient) -> None:
    """DELETE of a tag is 202 and removes only that tag; the manifest stays, by digest and by its other tags."""
    repo = "conformance/del-tag"
    image = await client.push_image(repo, "keep")
    for tag in ("t0", "t1", "t2"):
        assert (await client.put_manifest(repo, tag, image.manifest)).status == 201
    before = await tags_of(client, repo)
    reply = await client.request("DELETE", f"/v2/{repo}/manifests/t1")
    assert reply.status == 202
    assert_error(await client.request("GET", f"/v2/{repo}/manifests/t1"), 404, "MANIFEST_UNKNOWN")
    assert await tags_of(client, repo) == [t for t in before if t != "t1"]
    for ref in (image.manifest.digest, "t0", "keep"):
        got = await client.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert got.status == 200 and got.body == image.manifest.body


async def test_delete_manifest_by_digest(client: RegistryClient) -> None:
    """DELETE of a manifest by digest is 202; it and every tag naming it are then 404, and deleting again is 404."""
    repo = "conformance/del-manifest"
    other = await client.push_image(repo, "other", seed="b")
    image = await client.push_image(repo, "gone", seed="a")
    assert (await client.put_manifest(repo, "gone-too", image.manifest)).status == 201
    reply = await client.request("DELETE", f"/v2/{repo}/manifests/{image.manifest.digest}")
    assert reply.status == 202
    for ref in (image.manifest.digest, "gone", "gone-too"):
        assert_error(await client.request("GET", f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
        assert (await client.request("HEAD", f"/v2/{repo}/manifests/{ref}")).status == 404
    assert await tags_of(client, repo) == ["other"]
    assert (await client.request("GET", f"/v2/{repo}/manifests/other", headers={"Accept": OCI_MANIFEST})).status == 200
    again = await client.request("DELETE", f"/v2/{repo}/manifests/{image.manifest.digest}")
    assert_error(again, 404, "MANIFEST_UNKNOWN")
    assert other.manifest.digest != image.manifest.digest


async def test_deleting_a_manifest_keeps_its_blobs(client: RegistryClient) -> None:
    """Deleting a manifest leaves its config and layers pullable (blobs go only by their own DELETE or GC)."""
    repo = "conformance/del-manifest-blobs"
    image = await client.push_image(repo, "x")
    assert (await client.request("DELETE", f"/v2/{repo}/manifests/{image.manifest.digest}")).status == 202
    for blob in (image.config, *image.layers):
        got = await client.request("GET", f"/v2/{repo}/blobs/{blob.digest}")
        assert got.status == 200 and got.body == blob.data


async def test_delete_unknown_manifest_and_tag_are_404(client: RegistryClient) -> None:
    """DELETE of a digest or tag the repository does not have is 404 MANIFEST_UNKNOWN."""
    repo = "conformance/del-unknown"
    await client.push_image(repo, "present")
    assert_error(
        await client.request("DELETE", f"/v2/{repo}/manifests/{sha256(b'no manifest')}"), 404, "MANIFEST_UNKNOWN"
    )
    assert_error(await client.request("DELETE", f"/v2/{repo}/manifests/absent"), 404, "MANIFEST_UNKNOWN")


async def test_delete_in_unknown_repository_is_404(client: RegistryClient) -> None:
    """DELETE of a manifest or blob in a repository that does not exist is 404 (spec: MUST)."""
    digest = sha256(b"anything")
    for kind, codes in (
        ("manifests", ("NAME_UNKNOWN", "MANIFEST_UNKNOWN")),
        ("blobs", ("NAME_UNKNOWN", "BLOB_UNKNOWN")),
    ):
        reply = await client.request("DELETE", f"/v2/conformance/never-existed/{kind}/{digest}")
        assert_error(reply, 404, *codes)


async def test_delete_blob(client: RegistryClient) -> None:
    """DELETE of a blob is 202; GET and HEAD are then 404 (BLOB_UNKNOWN), and a second DELETE is 404 BLOB_UNKNOWN."""
    repo = "conformance/del-blob"
    blob = Blob(filler("delete me", 1200))
    await client.push_blob(repo, blob)
    assert (await client.request("DELETE", f"/v2/{repo}/blobs/{blob.digest}")).status == 202
    assert_error(await client.request("GET", f"/v2/{repo}/blobs/{blob.digest}"), 404, "BLOB_UNKNOWN")
    assert (await client.request("HEAD", f"/v2/{repo}/blobs/{blob.digest}")).status == 404
    assert_error(await client.request("DELETE", f"/v2/{repo}/blobs/{blob.digest}"), 404, "BLOB_UNKNOWN")


async def test_delete_blob_in_one_repository_leaves_the_others(client: RegistryClient) -> None:
    """Deleting a blob from one repository does not take it from another repository that also has it."""
    blob = Blob(filler("shared blob", 900))
    await client.push_blob("conformance/del-shared-a", blob)
    await client.push_blob("conformance/del-shared-b", blob)
    assert (await client.request("DELETE", f"/v2/conformance/del-shared-a/blobs/{blob.digest}")).status == 202
    assert (await client.request("HEAD", f"/v2/conformance/del-shared-a/blobs/{blob.digest}")).status == 404
    kept = await client.request("GET", f"/v2/conformance/del-shared-b/blobs/{blob.digest}")
    assert kept.status == 200 and kept.body == blob.data


async def test_deleted_blob_can_be_pushed_again(client: RegistryClient) -> None:
    """A blob deleted from a repository can be uploaded there again and is served again."""
    repo = "conformance/del-blob"
    blob = Blob(filler("comes back", 800))
    await client.push_blob(repo, blob)
    assert (await client.request("DELETE", f"/v2/{repo}/blobs/{blob.digest}")).status == 202
    await client.push_blob(repo, blob)
    got = await client.request("GET", f"/v2/{repo}/blobs/{blob.digest}")
    assert got.status == 200 and got.body == blob.data


async def test_deleted_referrer_leaves_the_referrers_list(client: RegistryClient) -> None:
    """Deleting a referrer manifest removes it from its subject's referrers; the other referrer stays."""
    repo = "conformance/del-referrer"
    subject = await client.push_image(repo, "subject")
    empty = Blob(EMPTY_JSON, OCI_EMPTY)
    await client.push_blob(repo, empty)
    first = image_manifest(empty, [], subject=subject.manifest, artifact_type="application/vnd.example.a")
    second = image_manifest(empty, [], subject=subject.manifest, artifact_type="application/vnd.example.b")
    for doc in (first, second):
        assert (await client.put_manifest(repo, doc.digest, doc)).status == 201
    assert (await client.request("DELETE", f"/v2/{repo}/manifests/{first.digest}")).status == 202
    reply = await client.request("GET", f"/v2/{repo}/referrers/{subject.manifest.digest}")
    assert reply.status == 200
    assert [m["digest"] for m in reply.json()["manifests"]] == [second.digest]


async def test_deletes_disabled_answer_405_unsupported(locked: RegistryClient) -> None:
    """With deletes disabled, deleting a tag, a manifest or a blob is 405 UNSUPPORTED and changes nothing."""
    repo = "conformance/locked"
    image = await locked.push_image(repo, "stay")
    for path in (
        f"/v2/{repo}/manifests/stay",
        f"/v2/{repo}/manifests/{image.manifest.digest}",
        f"/v2/{repo}/blobs/{image.layers[0].digest}",
    ):
        assert_error(await locked.request("DELETE", path), 405, "UNSUPPORTED")
    for path in (
        f"/v2/{repo}/manifests/stay",
        f"/v2/{repo}/manifests/{image.manifest.digest}",
        f"/v2/{repo}/blobs/{image.layers[0].digest}",
    ):
        assert (await locked.request("HEAD", path, headers={"Accept": OCI_MANIFEST})).status == 200
    assert await tags_of(locked, repo) == ["stay"]


async def test_upload_cancel_works_with_deletes_disabled(locked: RegistryClient) -> None:
    """Cancelling an upload session is not a content delete: 204 even with deletes disabled, as in Distribution."""
    session = await locked.start_upload("conformance/locked")
    patched = await locked.request("PATCH", session.location, body=b"partial", headers=OCTET)
    assert patched.status == 202
    assert (await locked.request("DELETE", patched.location)).status == 204
    assert_error(await locked.request("GET", patched.location), 404, "BLOB_UPLOAD_UNKNOWN")
