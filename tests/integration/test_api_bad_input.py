"""Bad input gets the right OCI error, and nothing is written when a request fails (issue 2 §6)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.integration.api_harness import Api, digest, files_under, running

HEX = "0" * 64


async def raw_request(port: int, head: bytes, body_parts: list[bytes], pause: float = 0.0) -> bytes:
    """Send bytes exactly as given (no client-side URL normalisation) and return the raw answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    for part in body_parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(pause)
    try:
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


def port_of(api: Api) -> int:
    return int(api.base.rsplit(":", 1)[1])


@pytest.mark.parametrize("path", ["/v2/a/../b/tags/list", "/v2/Upper/tags/list", "/v2/a//b/tags/list",
                                  "/v2/" + "a" * 256 + "/tags/list", "/v2/-a/manifests/x"])
async def test_bad_repository_names(tmp_path: Path, path: str) -> None:
    """'..', upper case, '//', over-long and badly started names answer 400 NAME_INVALID."""
    async with running(tmp_path) as api:
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        answer = await raw_request(port_of(api), head, [])
    status_line, _, body = answer.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), status_line
    assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID"


@pytest.mark.parametrize("ref", ["sha256:abc", "md5:" + "a" * 32, "sha256:" + "G" * 64])
async def test_bad_digests(tmp_path: Path, ref: str) -> None:
    """Malformed or unsupported digests answer 400 DIGEST_INVALID for blobs and uploads."""
    async with running(tmp_path) as api:
        status, _, body = await api.req("GET", f"/v2/r/blobs/{ref}")
        assert status == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
        status, _, body = await api.req("POST", f"/v2/r/blobs/uploads/?digest={ref}", data=b"x")
        assert status == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
        assert not (api.root / "docker/registry/v2/blobs").exists()


async def test_monolithic_digest_mismatch_writes_nothing(tmp_path: Path) -> None:
    """A monolithic push whose body does not match ?digest= is DIGEST_INVALID and leaves no file."""
    async with running(tmp_path) as api:
        await api.push_blob("r", b"seed")
        before = files_under(api.root)
        status, _, body = await api.req("POST", f"/v2/r/blobs/uploads/?digest={digest(b'other')}", data=b"data")
        assert status == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
        assert files_under(api.root) == before


async def test_size_mismatch_is_refused(tmp_path: Path) -> None:
    """A body shorter than its Content-Length is refused and nothing is stored."""
    async with running(tmp_path) as api:
        await api.push_blob("r", b"seed")
        before = files_under(api.root)
        d = digest(b"abc")
        head = (f"POST /v2/r/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                "Connection: close\r\n\r\n").encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(api))
        writer.write(head + b"abc")
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 10)
        writer.close()
        for _ in range(50):  # the server cleans up after the connection is gone
            if files_under(api.root) == before:
                break
            await asyncio.sleep(0.1)
        assert files_under(api.root) == before


async def test_chunk_at_wrong_offset(tmp_path: Path) -> None:
    """A PATCH whose Content-Range does not continue the upload is 416 with the current Range."""
    async with running(tmp_path) as api:
        status, headers, _ = await api.req("POST", "/v2/r/blobs/uploads/")
        assert status == 202
        loc = headers["Location"]
        status, headers, _ = await api.req("PATCH", loc, data=b"abcd",
                                           headers={"Content-Range": "0-3", "Content-Type": "application/octet-stream"})
        assert status == 202 and headers["Range"] == "0-3"
        status, headers, body = await api.req("PATCH", headers["Location"], data=b"efgh",
                                              headers={"Content-Range": "10-13"})
        assert status == 416 and headers["Range"] == "0-3"
        assert json.loads(body)["errors"][0]["code"] == "RANGE_INVALID"
        status, headers, _ = await api.req("GET", loc)
        assert status == 204 and headers["Range"] == "0-3"


async def test_put_with_wrong_digest_removes_upload(tmp_path: Path) -> None:
    """Closing an upload with the wrong digest is DIGEST_INVALID; no blob appears, the session ends."""
    async with running(tmp_path) as api:
        _, headers, _ = await api.req("POST", "/v2/r/blobs/uploads/")
        loc = headers["Location"]
        await api.req("PATCH", loc, data=b"abcd")
        status, _, _ = await api.req("PUT", f"{loc}?digest={digest(b'nope')}")
        assert status == 400
        assert not (api.root / "docker/registry/v2/blobs").exists()
        status, _, body = await api.req("GET", loc)
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


@pytest.mark.parametrize(("body", "ctype", "code"), [
    (b"{not json", "application/vnd.oci.image.manifest.v1+json", "MANIFEST_INVALID"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/x-unknown"}).encode(), "application/x-unknown",
     "MANIFEST_INVALID"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + HEX,
                            "size": 2}, "layers": []}).encode(),
     "application/vnd.oci.image.manifest.v1+json", "MANIFEST_BLOB_UNKNOWN"),
])
async def test_bad_manifests_write_nothing(tmp_path: Path, body: bytes, ctype: str, code: str) -> None:
    """Non-JSON, unknown media types and missing blobs are refused with their code, and no file is added."""
    async with running(tmp_path) as api:
        await api.push_image("r", "keep")
        before = files_under(api.root)
        status, _, answer = await api.req("PUT", "/v2/r/manifests/new", data=body, headers={"Content-Type": ctype})
        assert status == 400 and json.loads(answer)["errors"][0]["code"] == code
        assert files_under(api.root) == before


async def test_manifest_too_large(tmp_path: Path) -> None:
    """A manifest over limits.manifestsize is 413 and nothing is written."""
    async with running(tmp_path, limits={"manifestsize": "1KiB"}) as api:
        status, _, answer = await api.req("PUT", "/v2/r/manifests/big", data=b" " * 2048,
                                          headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert status == 413 and json.loads(answer)["errors"][0]["code"] == "MANIFEST_INVALID"
        assert files_under(api.root) == set()


async def test_oversized_blob_is_refused(tmp_path: Path) -> None:
    """A blob over limits.blobsize is 413 and leaves no upload or blob behind."""
    async with running(tmp_path, limits={"blobsize": "1KiB"}) as api:
        status, _, answer = await api.req("POST", f"/v2/r/blobs/uploads/?digest={digest(b'x' * 4096)}",
                                          data=b"x" * 4096)
        assert status == 413 and json.loads(answer)["errors"][0]["code"] == "SIZE_INVALID"
        assert not [f for f in files_under(api.root) if "/blobs/" in f or f.endswith("/data")]


async def test_slow_body_times_out(tmp_path: Path) -> None:
    """A body that stalls longer than limits.bodytimeout is cut with 408, keeping the upload as it was."""
    async with running(tmp_path, limits={"bodytimeout": "300ms"}) as api:
        _, headers, _ = await api.req("POST", "/v2/r/blobs/uploads/")
        loc = headers["Location"].split("127.0.0.1", 1)[1].split("/", 1)[1]
        head = (f"PATCH /{loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n").encode()
        answer = await raw_request(port_of(api), head, [b"x" * 10], pause=1.0)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        status, headers, _ = await api.req("GET", "/" + loc)
        assert status == 204 and headers["Range"] == "0-0"


@pytest.mark.parametrize(("method", "path", "code"), [
    ("GET", "/v2/r/blobs/uploads/00000000-0000-0000-0000-000000000000", "BLOB_UPLOAD_UNKNOWN"),
    ("PATCH", "/v2/r/blobs/uploads/00000000-0000-0000-0000-000000000000", "BLOB_UPLOAD_UNKNOWN"),
    ("GET", f"/v2/r/blobs/sha256:{HEX}", "BLOB_UNKNOWN"),
    ("GET", f"/v2/r/manifests/sha256:{HEX}", "MANIFEST_UNKNOWN"),
    ("GET", "/v2/r/manifests/nosuchtag", "MANIFEST_UNKNOWN"),
    ("GET", "/v2/nosuch/tags/list", "NAME_UNKNOWN"),
    ("DELETE", f"/v2/r/blobs/sha256:{HEX}", "BLOB_UNKNOWN"),
])
async def test_unknown_things_are_404(tmp_path: Path, method: str, path: str, code: str) -> None:
    """Unknown uploads, blobs, manifests and repositories answer 404 with their code."""
    async with running(tmp_path) as api:
        await api.push_image("r", "v1")
        status, headers, body = await api.req(method, path, data=b"" if method == "PATCH" else None)
        assert status == 404 and json.loads(body)["errors"][0]["code"] == code
        assert headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_deletes_disabled_answer_405(tmp_path: Path) -> None:
    """With storage.delete.enabled false, deletes are 405 UNSUPPORTED and the content stays."""
    async with running(tmp_path, storage={"delete": {"enabled": False}}) as api:
        d, _ = await api.push_image("r", "v1")
        for path in (f"/v2/r/manifests/{d}", "/v2/r/manifests/v1", f"/v2/r/blobs/{digest(b'layer')}"):
            status, _, body = await api.req("DELETE", path)
            assert status == 405 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
        assert (await api.req("GET", "/v2/r/manifests/v1"))[0] == 200
