"""OCI Distribution v1.1 "push" workflow against a running ``k3sreg serve``, part 1: blobs.

Covers the spec's ways to push a blob (single POST, POST then PUT, chunked PATCHes with ``Content-Range`` and a
closing PUT, a streamed PATCH), upload status and cancel, cross-repository mounts with and without ``from``, and
sessions served by two worker processes. Manifest pushes are in ``test_conformance_push_manifests.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.integration.oci_client import (
    OCI_MANIFEST,
    Blob,
    RegistryClient,
    assert_error,
    connect,
    filler,
    serve_k3sreg,
    sha256,
)
from tests.peers.registry import K3sregServer

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """One k3sreg for this module."""
    with serve_k3sreg(tmp_path_factory.mktemp("conformance-push")) as srv:
        yield srv


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """A k3sreg with ``--workers 2``: upload sessions must work whichever process gets each request."""
    with serve_k3sreg(tmp_path_factory.mktemp("conformance-push-workers"), workers=2) as srv:
        yield srv


@pytest.fixture
async def client(server: K3sregServer) -> AsyncIterator[RegistryClient]:
    """A client of the module's server."""
    async with connect(server.url) as c:
        yield c


async def assert_blob(client: RegistryClient, repo: str, blob: Blob) -> None:
    """``repo`` serves ``blob`` byte for byte."""
    reply = await client.request("GET", f"/v2/{repo}/blobs/{blob.digest}")
    assert reply.status == 200, reply.status
    assert reply.body == blob.data


async def assert_no_blob(client: RegistryClient, repo: str, digest: str) -> None:
    """``repo`` does not serve ``digest``."""
    assert (await client.request("HEAD", f"/v2/{repo}/blobs/{digest}")).status == 404


async def test_post_opens_a_session_with_location(client: RegistryClient) -> None:
    """POST to uploads/ is 202 with a Location for the session, and each POST gets a distinct one."""
    first = await client.start_upload("conformance/push-session")
    second = await client.start_upload("conformance/push-session")
    assert first.status == 202 and second.status == 202
    assert first.location and second.location and first.location != second.location
    assert "/v2/conformance/push-session/blobs/uploads/" in first.location


async def test_single_post_with_digest_is_201(client: RegistryClient) -> None:
    """POST ?digest= with the whole blob is 201, Location points at the blob, and the blob is pullable."""
    repo = "conformance/push-mono"
    blob = Blob(filler("single post", 4000))
    reply = await client.request(
        "POST", f"/v2/{repo}/blobs/uploads/", body=blob.data, headers=OCTET, params={"digest": blob.digest}
    )
    assert reply.status == 201, (reply.status, reply.body[:300])
    assert reply.headers["Docker-Content-Digest"] == blob.digest
    assert client.url(reply.location).endswith(f"/v2/{repo}/blobs/{blob.digest}")
    pulled = await client.request("GET", reply.location)
    assert pulled.status == 200 and pulled.body == blob.data


async def test_post_then_put_is_201(client: RegistryClient) -> None:
    """POST, then PUT <location>?digest= with the whole blob, is 201 with a pullable blob Location."""
    repo = "conformance/push-mono"
    blob = Blob(filler("post then put", 6000))
    session = await client.start_upload(repo)
    assert session.status == 202
    reply = await client.request("PUT", session.location, body=blob.data, headers=OCTET, params={"digest": blob.digest})
    assert reply.status == 201, reply.body
    assert client.url(reply.location).endswith(f"/v2/{repo}/blobs/{blob.digest}")
    assert reply.headers["Docker-Content-Digest"] == blob.digest
    await assert_blob(client, repo, blob)


async def test_streamed_patch_then_put(client: RegistryClient) -> None:
    """A PATCH without Content-Range appends the body (202, Range 0-<end>), and a PUT ?digest= closes it (201)."""
    repo = "conformance/push-stream"
    blob = Blob(filler("streamed", 7777))
    session = await client.start_upload(repo)
    patched = await client.request("PATCH", session.location, body=blob.data, headers=OCTET)
    assert patched.status == 202
    assert patched.headers["Range"] == f"0-{len(blob.data) - 1}"
    assert patched.location
    done = await client.request("PUT", patched.location, body=b"", params={"digest": blob.digest})
    assert done.status == 201 and done.location
    await assert_blob(client, repo, blob)


async def test_chunked_upload_in_order(client: RegistryClient) -> None:
    """In-order chunks (Content-Range) are 202 with Range 0-<end>; a closing PUT carrying the last chunk is 201."""
    repo = "conformance/push-chunked"
    blob = Blob(filler("chunked", 10_000))
    parts = [blob.data[:4000], blob.data[4000:8000], blob.data[8000:]]
    session = await client.start_upload(repo)
    location, offset = session.location, 0
    for part in parts[:2]:
        end = offset + len(part) - 1
        reply = await client.request(
            "PATCH", location, body=part, headers={**OCTET, "Content-Range": f"{offset}-{end}"}
        )
        assert reply.status == 202, reply.body
        assert reply.headers["Range"] == f"0-{end}"
        location, offset = reply.location, end + 1
    last_range = f"{offset}-{offset + len(parts[2]) - 1}"
    done = await client.request(
        "PUT", location, body=parts[2], headers={**OCTET, "Content-Range": last_range}, params={"digest": blob.digest}
    )
    assert done.status == 201, done.body
    await assert_blob(client, repo, blob)


async def test_out_of_order_first_chunk_is_416(client: RegistryClient) -> None:
    """A first chunk whose Content-Range does not start at 0 is 416, as the suite checks."""
    session = await client.start_upload("conformance/push-chunked")
    reply = await client.request(
        "PATCH", session.location, body=b"x" * 100, headers={**OCTET, "Content-Range": "100-199"}
    )
    assert reply.status == 416


async def test_retried_chunk_is_416_and_status_tells_the_offset(client: RegistryClient) -> None:
    """A re-sent chunk is 416; GET on the session is 204 with Location and Range, and the upload resumes there."""
    repo = "conformance/push-chunked"
    blob = Blob(filler("retry", 3000))
    session = await client.start_upload(repo)
    first = {**OCTET, "Content-Range": "0-1499"}
    assert (await client.request("PATCH", session.location, body=blob.data[:1500], headers=first)).status == 202
    retry = await client.request("PATCH", session.location, body=blob.data[:1500], headers=first)
    assert retry.status == 416
    status = await client.request("GET", session.location)
    assert status.status == 204
    assert status.headers["Range"] == "0-1499"
    assert status.location
    second = await client.request(
        "PATCH", status.location, body=blob.data[1500:], headers={**OCTET, "Content-Range": "1500-2999"}
    )
    assert second.status == 202 and second.headers["Range"] == "0-2999"
    done = await client.request("PUT", second.location, body=b"", params={"digest": blob.digest})
    assert done.status == 201
    await assert_blob(client, repo, blob)


async def test_large_blob_in_many_chunks(client: RegistryClient) -> None:
    """An 8 MiB blob sent as 1 MiB chunks (last one in the closing PUT) comes back intact."""
    repo = "conformance/push-chunked"
    blob = Blob(filler("large chunked", 8 * 1024 * 1024 + 123))
    step = 1024 * 1024
    location = (await client.start_upload(repo)).location
    offset = 0
    while len(blob.data) - offset > step:
        end = offset + step - 1
        reply = await client.request(
            "PATCH", location, body=blob.data[offset : end + 1], headers={**OCTET, "Content-Range": f"{offset}-{end}"}
        )
        assert reply.status == 202 and reply.headers["Range"] == f"0-{end}"
        location, offset = reply.location, end + 1
    done = await client.request("PUT", location, body=blob.data[offset:], headers=OCTET, params={"digest": blob.digest})
    assert done.status == 201
    head = await client.request("HEAD", f"/v2/{repo}/blobs/{blob.digest}")
    assert head.headers["Content-Length"] == str(len(blob.data))
    await assert_blob(client, repo, blob)


async def test_closed_session_is_gone(client: RegistryClient) -> None:
    """After the closing PUT, the session URL is 404 BLOB_UPLOAD_UNKNOWN for PUT, PATCH and GET."""
    repo = "conformance/push-session"
    blob = Blob(b"close once")
    session = await client.start_upload(repo)
    first = await client.request("PUT", session.location, body=blob.data, headers=OCTET, params={"digest": blob.digest})
    assert first.status == 201
    again = await client.request("PUT", session.location, body=blob.data, headers=OCTET, params={"digest": blob.digest})
    assert_error(again, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.request("PATCH", session.location, body=b"x", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.request("GET", session.location), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_zero_length_blob(client: RegistryClient) -> None:
    """A zero-length blob can be pushed and is served with Content-Length 0."""
    repo = "conformance/push-mono"
    blob = Blob(b"")
    reply = await client.request(
        "POST", f"/v2/{repo}/blobs/uploads/", body=b"", headers=OCTET, params={"digest": blob.digest}
    )
    assert reply.status == 201
    got = await client.request("GET", f"/v2/{repo}/blobs/{blob.digest}")
    assert got.status == 200 and got.body == b"" and got.headers["Content-Length"] == "0"


async def test_concurrent_sessions_for_the_same_blob(client: RegistryClient) -> None:
    """Two sessions uploading the same blob at once both finish with 201 and the blob is intact."""
    repo = "conformance/push-concurrent"
    blob = Blob(filler("concurrent", 300_000))
    sessions = [await client.start_upload(repo), await client.start_upload(repo)]
    replies = await asyncio.gather(
        *(
            client.request("PUT", s.location, body=blob.data, headers=OCTET, params={"digest": blob.digest})
            for s in sessions
        )
    )
    assert [r.status for r in replies] == [201, 201]
    await assert_blob(client, repo, blob)


async def test_new_session_status_is_empty(client: RegistryClient) -> None:
    """GET on a session with nothing uploaded yet is 204 and reports no bytes yet (Range 0-0, as Distribution)."""
    session = await client.start_upload("conformance/push-session")
    status = await client.request("GET", session.location)
    assert status.status == 204
    assert status.headers["Range"] == "0-0"


async def test_put_with_wrong_digest_is_digest_invalid(client: RegistryClient) -> None:
    """Closing an upload with a digest that does not match the bytes is 400 DIGEST_INVALID and stores nothing."""
    repo = "conformance/push-bad"
    data = filler("wrong digest", 500)
    claimed = sha256(b"something else")
    session = await client.start_upload(repo)
    reply = await client.request("PUT", session.location, body=data, headers=OCTET, params={"digest": claimed})
    assert_error(reply, 400, "DIGEST_INVALID")
    await assert_no_blob(client, repo, claimed)
    await assert_no_blob(client, repo, sha256(data))


async def test_cancelled_upload_is_gone(client: RegistryClient) -> None:
    """DELETE on a session is 204; afterwards the session is 404 BLOB_UPLOAD_UNKNOWN."""
    session = await client.start_upload("conformance/push-session")
    patched = await client.request("PATCH", session.location, body=b"abc", headers=OCTET)
    assert patched.status == 202
    assert (await client.request("DELETE", patched.location)).status == 204
    assert_error(await client.request("GET", patched.location), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_unknown_session_is_blob_upload_unknown(client: RegistryClient) -> None:
    """PATCH, PUT and GET on a session id the registry never issued are 404 BLOB_UPLOAD_UNKNOWN."""
    path = "/v2/conformance/push-session/blobs/uploads/3f1d2c4e-0000-4000-8000-000000000000"
    assert_error(await client.request("PATCH", path, body=b"x", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(
        await client.request("PUT", path, body=b"x", params={"digest": sha256(b"x")}), 404, "BLOB_UPLOAD_UNKNOWN"
    )
    assert_error(await client.request("GET", path), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_mount_from_another_repository_is_201(client: RegistryClient) -> None:
    """POST ?mount=&from= of a blob the source has is 201 with the blob's Location in the target repository."""
    blob = Blob(filler("mount me", 2048))
    await client.push_blob("conformance/mount-src", blob)
    reply = await client.start_upload(
        "conformance/mount-dst", params={"mount": blob.digest, "from": "conformance/mount-src"}
    )
    assert reply.status == 201
    assert client.url(reply.location).endswith(f"/v2/conformance/mount-dst/blobs/{blob.digest}")
    assert reply.headers["Docker-Content-Digest"] == blob.digest
    await assert_blob(client, "conformance/mount-dst", blob)


async def test_mount_of_missing_blob_opens_a_session(client: RegistryClient) -> None:
    """A mount the registry cannot do (blob unknown) is 202 with an upload session in the target repository."""
    missing = sha256(b"not anywhere")
    reply = await client.start_upload(
        "conformance/mount-dst", params={"mount": missing, "from": "conformance/mount-src"}
    )
    assert reply.status == 202
    assert "/v2/conformance/mount-dst/blobs/uploads/" in reply.location
    await assert_no_blob(client, "conformance/mount-dst", missing)


async def test_mount_without_from_finds_the_blob(client: RegistryClient) -> None:
    """A mount without ``from`` of a blob another repository holds is 201: k3sreg mounts automatically."""
    blob = Blob(filler("automatic mount", 1024))
    await client.push_blob("conformance/auto-src", blob)
    reply = await client.start_upload("conformance/auto-dst", params={"mount": blob.digest})
    assert reply.status == 201
    assert client.url(reply.location).endswith(f"/v2/conformance/auto-dst/blobs/{blob.digest}")
    await assert_blob(client, "conformance/auto-dst", blob)


async def test_mount_without_from_of_unknown_blob_opens_a_session(client: RegistryClient) -> None:
    """A mount without ``from`` of a blob no repository holds is 202 with an upload Location, as the suite checks."""
    reply = await client.start_upload("conformance/auto-dst", params={"mount": sha256(b"hello world")})
    assert reply.status == 202
    assert "/v2/conformance/auto-dst/blobs/uploads/" in reply.location


async def test_upload_across_workers(two_workers: K3sregServer) -> None:
    """With two workers and a new connection per request, a chunked upload, its status and a manifest push work."""
    async with connect(two_workers.url, fresh_connections=True) as client:
        repo = "conformance/push-workers"
        for round_ in range(3):
            blob = Blob(filler(f"workers {round_}", 40_000))
            location, offset = (await client.start_upload(repo)).location, 0
            for size in (10_000, 10_000, 10_000):
                end = offset + size - 1
                part = blob.data[offset : end + 1]
                reply = await client.request(
                    "PATCH", location, body=part, headers={**OCTET, "Content-Range": f"{offset}-{end}"}
                )
                assert reply.status == 202 and reply.headers["Range"] == f"0-{end}"
                status = await client.request("GET", reply.location)
                assert status.status == 204 and status.headers["Range"] == f"0-{end}"
                location, offset = reply.location, end + 1
            done = await client.request(
                "PUT", location, body=blob.data[offset:], headers=OCTET, params={"digest": blob.digest}
            )
            assert done.status == 201
            await assert_blob(client, repo, blob)
        image = await client.push_image(repo, "w")
        for _ in range(4):
            got = await client.request("GET", f"/v2/{repo}/manifests/w", headers={"Accept": OCI_MANIFEST})
            assert got.status == 200 and got.body == image.manifest.body
