"""Parameters are names, never paths: every name-like input is checked against its grammar before it reaches
storage (issue 8 §2), and nothing a client sends makes a 500 (§3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.api_harness import Api, digest, files_under, running
from tests.integration.test_api_bad_input import port_of, raw_request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def code_of(body: bytes) -> str:
    code: str = json.loads(body)["errors"][0]["code"]
    return code


async def plant_mount_source(api: Api, tmp_path: Path) -> str:
    """A blob in the store, and a link to it in `tmp_path/canary`: outside the storage root, where
    `from=../../../../../canary` would lead. Returns the blob's digest."""
    d = await api.push_blob("r", b"secret layer")
    link = tmp_path / "canary" / "_layers" / "sha256" / d.split(":")[1] / "link"
    link.parent.mkdir(parents=True)
    link.write_text(d)
    return d


async def test_from_cannot_leave_the_storage_root(tmp_path: Path) -> None:
    """A mount `from=../../../../../canary` mounts nothing, whether or not a link file waits there (202 both)."""
    async with running(tmp_path) as api:
        planted = await plant_mount_source(api, tmp_path)
        absent = await api.push_blob("r", b"other layer")
        for d in (planted, absent):
            status, headers, _ = await api.req("POST", "/v2/x/blobs/uploads/",
                                               params={"mount": d, "from": "../../../../../canary"})
            assert status == 202, (d, status)
            assert "/blobs/uploads/" in headers["Location"]
        status, _, _ = await api.req("HEAD", f"/v2/x/blobs/{planted}")
        assert status == 404


@pytest.mark.parametrize("source", ["x" * 300, "a" * 256 + "/b", "a\x00b", "A/b", "a//b", "/etc", "a/../../b"])
async def test_from_that_is_no_repository_name_opens_a_plain_upload(tmp_path: Path, source: str) -> None:
    """A `from` outside the name grammar (too long, NUL, upper case, '..') gets an upload session, as from
    Distribution; no 500."""
    async with running(tmp_path) as api:
        d = await api.push_blob("r", b"layer")
        status, _, _ = await api.req("POST", "/v2/x/blobs/uploads/", params={"mount": d, "from": source})
        assert status == 202


@pytest.mark.parametrize("session", ["a%00b", "%00", "x" * 300, "..", ".", "%2e%2e", "caf%C3%A9"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
async def test_upload_ids_outside_the_grammar_are_unknown(tmp_path: Path, session: str, method: str) -> None:
    """Upload ids with NUL bytes, dots only, 300 characters or non-ASCII answer 404 BLOB_UPLOAD_UNKNOWN."""
    async with running(tmp_path) as api:
        await api.push_blob("r", b"seed")
        before = files_under(api.root)
        query = f"?digest={digest(b'')}" if method == "PUT" else ""
        head = (f"{method} /v2/r/blobs/uploads/{session}{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n").encode()
        answer = await raw_request(port_of(api), head, [])
        status_line, _, body = answer.partition(b"\r\n\r\n")
        assert status_line.startswith(b"HTTP/1.1 404"), status_line
        assert code_of(body) == "BLOB_UPLOAD_UNKNOWN"
        assert files_under(api.root) == before


async def test_a_distribution_style_upload_id_still_works(tmp_path: Path) -> None:
    """An upload session whose id uses Distribution's whole alphabet (as on a registry:2 volume) is served."""
    async with running(tmp_path) as api:
        uploads = api.root / "docker/registry/v2/repositories/r/_uploads/A_b-c.d=e"
        uploads.mkdir(parents=True)
        (uploads / "data").write_bytes(b"abc")
        (uploads / "startedat").write_text(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        status, headers, _ = await api.req("GET", "/v2/r/blobs/uploads/A_b-c.d=e")
        assert status == 204 and headers["Range"] == "0-2"
        status, _, _ = await api.req("PUT", f"/v2/r/blobs/uploads/A_b-c.d=e?digest={digest(b'abc')}")
        assert status == 201


@pytest.mark.parametrize("ref", ["v1%00", "-v1", "x" * 129, "v1%20", "v1!"])
async def test_tags_outside_the_grammar(tmp_path: Path, ref: str) -> None:
    """A tag that does not match the grammar (NUL, a leading dash, 129 characters, a space) is TAG_INVALID on PUT and
    MANIFEST_UNKNOWN on GET; nothing is written."""
    async with running(tmp_path) as api:
        _, body = await api.push_image("r", "v1")
        before = files_under(api.root)
        status, _, answer = await api.req("PUT", f"http://127.0.0.1:{port_of(api)}/v2/r/manifests/{ref}",
                                          data=body, headers={"Content-Type": OCI_MANIFEST})
        assert status == 400 and code_of(answer) == "TAG_INVALID"
        status, _, answer = await api.req("GET", f"/v2/r/manifests/{ref}")
        assert status == 404 and code_of(answer) == "MANIFEST_UNKNOWN"
        assert files_under(api.root) == before


@pytest.mark.parametrize(("path", "last", "code"), [
    ("/v2/r/tags/list", "..%2F..%2Fx", "TAG_INVALID"), ("/v2/r/tags/list", "a%00", "TAG_INVALID"),
    ("/v2/_catalog", "..%2F..%2Fx", "NAME_INVALID"), ("/v2/_catalog", "A%00", "NAME_INVALID"),
])
async def test_last_must_be_a_tag_or_a_name(tmp_path: Path, path: str, last: str, code: str) -> None:
    """`last` of tags/list is a tag and `last` of the catalog a repository name: anything else is 400."""
    async with running(tmp_path) as api:
        await api.push_image("r", "v1")
        status, _, answer = await api.req("GET", f"http://127.0.0.1:{port_of(api)}{path}?last={last}")
        assert status == 400 and code_of(answer) == code


async def test_ns_must_be_a_registry_host(tmp_path: Path) -> None:
    """With upstreams configured, an `ns` that is no registry host is 400 NAME_INVALID (it never picks one)."""
    async with running(tmp_path, upstreams=[{"name": "docker.io", "url": "http://127.0.0.1:9"}]) as api:
        for ns in ("a%00b", "..%2F..", "x" * 300 + ".io", "a b"):
            status, _, answer = await api.req("GET", f"http://127.0.0.1:{port_of(api)}/v2/r/manifests/v1?ns={ns}")
            assert status == 400 and code_of(answer) == "NAME_INVALID", ns


async def test_deeply_nested_manifest_is_manifest_invalid(tmp_path: Path) -> None:
    """A manifest nested 100,000 levels deep is 400 MANIFEST_INVALID (not a RecursionError), nothing stored."""
    async with running(tmp_path) as api:
        await api.push_image("r", "v1")
        before = files_under(api.root)
        for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
            status, _, answer = await api.req("PUT", "/v2/r/manifests/deep", data=body,
                                              headers={"Content-Type": OCI_MANIFEST})
            assert status == 400 and code_of(answer) == "MANIFEST_INVALID"
        assert files_under(api.root) == before


@pytest.mark.parametrize("platform", ["linux/amd64", 7, ["linux", "amd64"], {"os": "linux", "architecture": 64}])
async def test_index_entry_platform_must_be_an_object(tmp_path: Path, platform: object) -> None:
    """An index whose entry has a platform that is a string, a number, a list or has non-string fields is
    400 MANIFEST_INVALID at PUT."""
    async with running(tmp_path) as api:
        d, body = await api.push_image("r", "v1")
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": len(body), "platform": platform}]}
        status, _, answer = await api.req("PUT", "/v2/r/manifests/idx", data=json.dumps(doc).encode(),
                                          headers={"Content-Type": OCI_INDEX})
        assert status == 400 and code_of(answer) == "MANIFEST_INVALID"


def plant_manifest(root: Path, repo: str, tag: str, data: bytes) -> str:
    """Store `data` under `tag` the way a registry:2 volume holds it, without any check."""
    d = digest(data)
    hexd = d.split(":")[1]
    v2 = root / "docker/registry/v2"
    blob = v2 / "blobs/sha256" / hexd[:2] / hexd / "data"
    repo_dir = v2 / "repositories" / repo / "_manifests"
    for path, content in ((blob, data), (repo_dir / "revisions/sha256" / hexd / "link", d.encode()),
                          (repo_dir / "tags" / tag / "current/link", d.encode()),
                          (repo_dir / "tags" / tag / "index/sha256" / hexd / "link", d.encode())):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return d


@pytest.mark.parametrize("platform", ["linux/amd64", 7, ["linux"], None])
async def test_stored_list_with_odd_platform_is_served_without_a_crash(tmp_path: Path, platform: object) -> None:
    """A stored Docker list (as a registry:2 volume may hold) whose entry platform is no object answers an
    image-only Accept with 404 MANIFEST_UNKNOWN, and a list Accept with the list."""
    async with running(tmp_path) as api:
        d, body = await api.push_image("r", "v1")
        doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": len(body), "platform": platform}]}
        listed = plant_manifest(api.root, "r", "odd", json.dumps(doc).encode())
        accept = "application/vnd.docker.distribution.manifest.v2+json"
        status, _, answer = await api.req("GET", "/v2/r/manifests/odd", headers={"Accept": accept})
        assert status == 404 and code_of(answer) == "MANIFEST_UNKNOWN"
        status, headers, _ = await api.req("GET", "/v2/r/manifests/odd", headers={"Accept": DOCKER_LIST})
        assert status == 200 and headers["Docker-Content-Digest"] == listed


async def test_stored_deep_document_is_served_as_stored(tmp_path: Path) -> None:
    """A stored manifest nested 100,000 levels deep is served byte for byte (GET never parses it unguarded)."""
    async with running(tmp_path) as api:
        data = b"[" * 100_000 + b"]" * 100_000
        d = plant_manifest(api.root, "r", "deep", data)
        status, headers, answer = await api.req("GET", "/v2/r/manifests/deep")
        assert status == 200 and answer == data and headers["Docker-Content-Digest"] == d
