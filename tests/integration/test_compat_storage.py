"""On-disk compatibility with Docker Distribution 2.8.2: one implementation writes a root directory with skopeo,
the other serves it (and back). The docker-registry → docker-registry pair is the control that proves the checks.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest

from tests.peers import api
from tests.peers.crash import open_upload, with_query
from tests.peers.images import TestLayout, digest_of, read_blob
from tests.peers.registry import RegistryProcess, make_registry
from tests.peers.skopeo import Skopeo

# k3sreg → k3sreg (a restart on the same root) is covered by the crash-safety tests.
PAIRS = [
    ("docker-registry", "docker-registry"),
    ("docker-registry", "k3sreg"),
    ("k3sreg", "docker-registry"),
]
PAIR_IDS = [f"{w}-to-{r}" for w, r in PAIRS]


def push_all(reg: RegistryProcess, skopeo: Skopeo, layout: TestLayout) -> bytes:
    """Push the single image, the index (--all) and the referrer to library/demo, the image to other/app, a tag
    moved from the image to the index in deep/nested/path/app, and the index converted to a Docker manifest list
    to docker/list; return that list's bytes as served."""
    skopeo.copy(layout.oci_ref(), f"docker://{reg.host}/library/demo:1")
    skopeo.copy(layout.oci_ref(layout.multi_tag), f"docker://{reg.host}/library/demo:multi", all=True)
    skopeo.copy(layout.oci_ref(layout.referrer_tag), f"docker://{reg.host}/library/demo:sig")
    skopeo.copy(layout.oci_ref(), f"docker://{reg.host}/other/app:v1")
    # A tag moved to another manifest leaves history in the tag's index; the reader must serve the latest.
    skopeo.copy(layout.oci_ref(), f"docker://{reg.host}/deep/nested/path/app:moving")
    skopeo.copy(layout.oci_ref(layout.multi_tag), f"docker://{reg.host}/deep/nested/path/app:moving", all=True)
    list_ref = f"docker://{reg.host}/docker/list:v2s2"
    skopeo.copy(layout.oci_ref(layout.multi_tag), list_ref, all=True, extra=["--format", "v2s2"])
    return skopeo.raw_manifest(list_ref)


def assert_serves_all(reg: RegistryProcess, skopeo: Skopeo, layout: TestLayout, docker_list: bytes, out: Path) -> None:
    """Everything ``push_all`` wrote is listed and served byte for byte, and copies back to a layout."""
    assert set(api.catalog(reg.url)) == {"library/demo", "other/app", "docker/list", "deep/nested/path/app"}
    moved = api.manifest(reg.url, "deep/nested/path/app", "moving")
    assert moved.headers["docker-content-digest"] == layout.index.digest
    assert api.tags(reg.url, "deep/nested/path/app") == ["moving"]
    served = api.manifest(reg.url, "docker/list", "v2s2")
    assert (served.status, served.body) == (200, docker_list)
    assert served.headers["content-type"] == json.loads(docker_list)["mediaType"]
    for entry in json.loads(docker_list)["manifests"]:
        child = api.manifest(reg.url, "docker/list", entry["digest"])
        assert (child.status, child.headers["content-type"]) == (200, entry["mediaType"])
        assert child.headers["docker-content-digest"] == digest_of(child.body) == entry["digest"]
    assert sorted(api.tags(reg.url, "library/demo")) == ["1", "multi", "sig"]
    assert api.tags(reg.url, "other/app") == ["v1"]
    expected = {"1": layout.single.digest, "multi": layout.index.digest, "sig": layout.referrer.digest}
    for tag, digest in expected.items():
        resp = api.manifest(reg.url, "library/demo", tag)
        assert resp.status == 200, (tag, resp.status, resp.body)
        assert resp.headers["docker-content-digest"] == digest
        assert resp.body == read_blob(layout.root, digest)
    for image in layout.platforms.values():
        assert api.manifest(reg.url, "library/demo", image.digest).body == read_blob(layout.root, image.digest)
        for blob in image.blobs:
            head = api.blob_head(reg.url, "library/demo", blob)
            assert head.status == 200, blob
            assert int(head.headers["content-length"]) == len(read_blob(layout.root, blob))
    assert skopeo.inspect(f"docker://{reg.host}/other/app:v1")["Digest"] == layout.single.digest
    skopeo.copy(f"docker://{reg.host}/library/demo:multi", f"oci:{out}:multi", all=True)
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == layout.index.digest
    for image in layout.platforms.values():
        for blob in image.blobs:
            assert read_blob(out, blob) == read_blob(layout.root, blob)


def assert_distribution_layout(root: Path, layout: TestLayout) -> None:
    """The files Distribution 2.8 reads are where it expects them (names the first missing one)."""
    v2 = root / "docker" / "registry" / "v2"
    for blob in [layout.single.digest, *layout.single.blobs]:
        hexpart = blob.split(":", 1)[1]
        assert (v2 / "blobs" / "sha256" / hexpart[:2] / hexpart / "data").is_file(), blob
    repo = v2 / "repositories" / "library" / "demo"
    tag_link = repo / "_manifests" / "tags" / "1" / "current" / "link"
    assert tag_link.read_text() == layout.single.digest
    index_link = repo / "_manifests" / "tags" / "1" / "index" / "sha256" / layout.single.digest[7:] / "link"
    assert index_link.read_text() == layout.single.digest
    revision = repo / "_manifests" / "revisions" / "sha256" / layout.single.digest[7:] / "link"
    assert revision.read_text() == layout.single.digest
    for blob in layout.single.blobs:
        assert (repo / "_layers" / "sha256" / blob[7:] / "link").read_text() == blob


@pytest.mark.parametrize(("writer", "reader"), PAIRS, ids=PAIR_IDS)
def test_root_directory_handed_over(
    writer: str, reader: str, skopeo: Skopeo, oci_layout: TestLayout, tmp_path: Path
) -> None:
    """A root directory written by ``writer`` is served completely and unchanged by ``reader``."""
    root = tmp_path / "data"
    with make_registry(writer, tmp_path / "writer", root=root) as reg:
        docker_list = push_all(reg, skopeo, oci_layout)
    assert_distribution_layout(root, oci_layout)
    with make_registry(reader, tmp_path / "reader", root=root) as reg:
        assert_serves_all(reg, skopeo, oci_layout, docker_list, tmp_path / "back")


@pytest.mark.parametrize(("writer", "reader"), PAIRS, ids=PAIR_IDS)
def test_changes_on_handed_over_root(
    writer: str, reader: str, skopeo: Skopeo, oci_layout: TestLayout, tmp_path: Path
) -> None:
    """Tags added, manifests deleted and blobs mounted by ``reader`` on ``writer``'s data are seen by ``writer``."""
    root = tmp_path / "data"
    with make_registry(writer, tmp_path / "writer", root=root) as reg:
        push_all(reg, skopeo, oci_layout)
    with make_registry(reader, tmp_path / "reader", root=root) as reg:
        skopeo.copy(f"docker://{reg.host}/library/demo:1", f"docker://{reg.host}/library/demo:2")
        skopeo.copy(f"docker://{reg.host}/library/demo:1", f"docker://{reg.host}/mounted/app:1")
        skopeo.delete(f"docker://{reg.host}/other/app:v1")
    with make_registry(writer, tmp_path / "writer-again", root=root) as reg:
        assert sorted(api.tags(reg.url, "library/demo")) == ["1", "2", "multi", "sig"]
        assert api.manifest(reg.url, "library/demo", "2").headers["docker-content-digest"] == oci_layout.single.digest
        assert skopeo.inspect(f"docker://{reg.host}/mounted/app:1")["Digest"] == oci_layout.single.digest
        for blob in oci_layout.single.blobs:
            assert api.blob_head(reg.url, "mounted/app", blob).status == 200
        assert api.manifest(reg.url, "other/app", oci_layout.single.digest).status == 404
        assert api.tags(reg.url, "other/app") == []


@pytest.mark.parametrize("impl", ["docker-registry", "k3sreg"])
def test_open_upload_creates_no_repository(impl: str, tmp_path: Path) -> None:
    """An upload session alone or a failed mount makes no repository (not in the catalog, tags/list 404)."""
    # Distribution's behaviour; it must hold after a SIGKILL and restart too, so a crash leaves no empty repo.
    with make_registry(impl, tmp_path / "reg") as reg:
        opened = api.request("POST", f"{reg.url}/v2/only/upload/blobs/uploads/")
        assert opened.status == 202
        mount = api.request("POST", f"{reg.url}/v2/only/mount/blobs/uploads/?mount=sha256:{'a' * 64}&from=x/y")
        assert mount.status == 202
        for restart in (False, True):
            if restart:
                reg.kill()
                reg.start()
            assert api.catalog(reg.url) == [], restart
            for repo in ("only/upload", "only/mount"):
                resp = api.request("GET", f"{reg.url}/v2/{repo}/tags/list")
                assert resp.status == 404, (repo, restart, resp.body)
                assert resp.json()["errors"][0]["code"] == "NAME_UNKNOWN"


@pytest.mark.parametrize("reader", ["docker-registry", "k3sreg"])
async def test_upload_in_progress_handed_over(reader: str, tmp_path: Path) -> None:
    """An upload docker-registry acknowledged half of is resumed and completed by ``reader`` on the same root."""
    # A shared http.secret lets Distribution verify the upload state it signed; k3sreg must accept its Location.
    config = {"http": {"secret": "k3sreg-tests-fixed-secret"}}
    data = random.Random(9).randbytes(2 * 1024 * 1024)
    digest = digest_of(data)
    half = len(data) // 2
    octets = {"Content-Type": "application/octet-stream"}
    root = tmp_path / "data"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        with make_registry("docker-registry", tmp_path / "writer", root=root, config=config) as reg:
            location = await open_upload(session, reg, "handed/over")
            first = {**octets, "Content-Range": f"0-{half - 1}"}
            async with session.patch(location, data=data[:half], headers=first) as resp:
                assert resp.status == 202, await resp.text()
                parts = urlsplit(resp.headers["Location"])
        with make_registry(reader, tmp_path / "reader", root=root, config=config) as reg:
            location = reg.url + parts.path + (f"?{parts.query}" if parts.query else "")
            async with session.get(location) as resp:
                assert (resp.status, resp.headers.get("Range")) == (204, f"0-{half - 1}"), await resp.text()
            rest = {**octets, "Content-Range": f"{half}-{len(data) - 1}"}
            async with session.patch(location, data=data[half:], headers=rest) as resp:
                assert resp.status == 202, await resp.text()
                location = urljoin(reg.url, resp.headers["Location"])
            async with session.put(with_query(location, f"digest={digest}")) as resp:
                assert resp.status == 201, await resp.text()
            assert api.blob_head(reg.url, "handed/over", digest).status == 200
