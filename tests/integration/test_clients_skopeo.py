"""skopeo against each registry implementation: copy (one image, ``--all`` of an index, a referrer), inspect,
list-tags, delete and sync, checking digests and the exact manifest bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.peers import api
from tests.peers.images import TestLayout, digest_of, read_blob
from tests.peers.registry import RegistryProcess
from tests.peers.skopeo import Skopeo, ToolError

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def test_copy_single_image_keeps_digest(registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """skopeo copy of one image stores the manifest byte for byte; inspect reports the same digest."""
    dest = f"docker://{registry.host}/skopeo/single:1"
    skopeo.copy(oci_layout.oci_ref(), dest)
    assert skopeo.inspect(dest)["Digest"] == oci_layout.single.digest
    assert skopeo.raw_manifest(dest) == read_blob(oci_layout.root, oci_layout.single.digest)
    for blob in oci_layout.single.blobs:
        head = api.blob_head(registry.url, "skopeo/single", blob)
        assert head.status == 200
        assert head.headers["docker-content-digest"] == blob
        assert int(head.headers["content-length"]) == len(read_blob(oci_layout.root, blob))


def test_copy_all_of_index(registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout, tmp_path: Path) -> None:
    """skopeo copy --all pushes the index and every platform, and copies back to an identical layout."""
    dest = f"docker://{registry.host}/skopeo/multi:m"
    skopeo.copy(oci_layout.oci_ref(oci_layout.multi_tag), dest, all=True)
    assert skopeo.raw_manifest(dest) == read_blob(oci_layout.root, oci_layout.index.digest)
    for arch, image in oci_layout.platforms.items():
        resp = api.manifest(registry.url, "skopeo/multi", image.digest)
        assert resp.status == 200, arch
        assert resp.body == read_blob(oci_layout.root, image.digest)
        assert resp.headers["docker-content-digest"] == image.digest
    out = tmp_path / "back"
    skopeo.copy(dest, f"oci:{out}:m", all=True)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == oci_layout.index.digest
    for image in oci_layout.platforms.values():
        for blob in image.blobs:
            assert read_blob(out, blob) == read_blob(oci_layout.root, blob)


def test_inspect_platform_of_index(registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """skopeo inspect --override-arch resolves the index to the arm64 image through the registry."""
    dest = f"docker://{registry.host}/skopeo/inspect:m"
    skopeo.copy(oci_layout.oci_ref(oci_layout.multi_tag), dest, all=True)
    info = json.loads(skopeo.run("--override-arch", "arm64", "inspect", "--tls-verify=false", dest).stdout)
    arm64 = oci_layout.platforms["arm64"]
    assert info["Architecture"] == "arm64"
    assert info["Digest"] == oci_layout.index.digest
    assert info["Layers"] == [layer.digest for layer in arm64.layers]


def test_copy_referrer_keeps_subject(registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """An artifact manifest with a subject is pushed and served unchanged (subject and artifactType kept)."""
    repo = f"{registry.host}/skopeo/signed"
    skopeo.copy(oci_layout.oci_ref(), f"docker://{repo}:1")
    skopeo.copy(oci_layout.oci_ref(oci_layout.referrer_tag), f"docker://{repo}:sig")
    raw = skopeo.raw_manifest(f"docker://{repo}:sig")
    assert raw == read_blob(oci_layout.root, oci_layout.referrer.digest)
    assert json.loads(raw)["subject"]["digest"] == oci_layout.single.digest


def test_copy_docker_schema2_list(registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """A Docker v2 schema 2 manifest list and its manifests are stored and served unchanged, typed as pushed."""
    dest = f"docker://{registry.host}/skopeo/v2s2:list"
    skopeo.copy(oci_layout.oci_ref(oci_layout.multi_tag), dest, all=True, extra=["--format", "v2s2"])
    raw = skopeo.raw_manifest(dest)
    listing = json.loads(raw)
    assert listing["mediaType"] == DOCKER_LIST
    resp = api.manifest(registry.url, "skopeo/v2s2", "list")
    assert resp.body == raw
    assert resp.headers["content-type"] == DOCKER_LIST
    assert resp.headers["docker-content-digest"] == digest_of(raw)
    for entry in listing["manifests"]:
        child = api.manifest(registry.url, "skopeo/v2s2", entry["digest"])
        assert child.status == 200
        assert child.headers["content-type"] == DOCKER_MANIFEST == entry["mediaType"]
        assert digest_of(child.body) == entry["digest"]
        assert len(child.body) == entry["size"]


def test_list_tags(registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """skopeo list-tags shows every tag pushed to a repository, and only those."""
    repo = f"{registry.host}/skopeo/tags"
    for tag in ("a", "b", "v1.0"):
        skopeo.copy(oci_layout.oci_ref(), f"docker://{repo}:{tag}")
    assert sorted(skopeo.list_tags(f"docker://{repo}")) == ["a", "b", "v1.0"]
    assert "skopeo/tags" in api.catalog(registry.url)


def test_delete(registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """skopeo delete removes the manifest: its tags disappear and inspect fails, other repositories keep it."""
    repo = f"{registry.host}/skopeo/delete"
    skopeo.copy(oci_layout.oci_ref(), f"docker://{repo}:gone")
    skopeo.copy(oci_layout.oci_ref(), f"docker://{registry.host}/skopeo/keep:1")
    skopeo.delete(f"docker://{repo}:gone")
    assert "gone" not in skopeo.list_tags(f"docker://{repo}")
    with pytest.raises(ToolError, match="manifest unknown"):
        skopeo.inspect(f"docker://{repo}@{oci_layout.single.digest}")
    assert api.manifest(registry.url, "skopeo/delete", oci_layout.single.digest).status == 404
    assert skopeo.inspect(f"docker://{registry.host}/skopeo/keep:1")["Digest"] == oci_layout.single.digest


def test_sync_between_repositories(registry: RegistryProcess, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """skopeo sync copies every tag of a repository (index with --all) to another namespace, digests equal."""
    src = f"{registry.host}/skopeo/sync-src"
    skopeo.copy(oci_layout.oci_ref(), f"docker://{src}:1")
    skopeo.copy(oci_layout.oci_ref(oci_layout.multi_tag), f"docker://{src}:m", all=True)
    skopeo.sync(src, f"{registry.host}/mirror", all=True)
    dst = f"{registry.host}/mirror/sync-src"
    assert sorted(skopeo.list_tags(f"docker://{dst}")) == ["1", "m"]
    assert skopeo.raw_manifest(f"docker://{dst}:m") == read_blob(oci_layout.root, oci_layout.index.digest)
    assert skopeo.inspect(f"docker://{dst}:1")["Digest"] == oci_layout.single.digest
