"""Manifest parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from k3sreg.oci import mediatypes as mt
from k3sreg.oci.manifest import (
    MAX_DEPTH,
    InvalidManifest,
    UnsupportedMediaType,
    nesting_exceeds,
    parse_manifest,
    platform_child,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def image(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 10},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 20}],
    }
    doc.update(extra)
    return doc


def test_image_lists_config_and_layers_as_blobs() -> None:
    """An image manifest references its config and layers."""
    m = parse_manifest(json.dumps(image()).encode(), mt.OCI_MANIFEST)
    assert [str(b.digest) for b in m.blobs] == [D1, D2] and not m.is_index


def test_index_lists_children() -> None:
    """An index references child manifests, not blobs."""
    doc = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST,
           "manifests": [{"mediaType": mt.DOCKER_MANIFEST, "digest": D1, "size": 5}]}
    m = parse_manifest(json.dumps(doc).encode(), None)
    assert m.is_index and [str(c.digest) for c in m.manifests] == [D1]


def test_subject_and_artifact_type_from_config() -> None:
    """A referrer's artifact type falls back to its config media type, and its subject is kept."""
    doc = image(subject={"mediaType": mt.OCI_MANIFEST, "digest": D2, "size": 3})
    doc["config"]["mediaType"] = "application/vnd.example.sig"
    m = parse_manifest(json.dumps(doc).encode(), None)
    assert m.subject is not None and str(m.subject.digest) == D2
    assert m.artifact_type == "application/vnd.example.sig"


def test_media_type_guessed_when_absent() -> None:
    """OCI manifests may omit mediaType; the shape tells the type."""
    doc = image()
    del doc["mediaType"]
    assert parse_manifest(json.dumps(doc).encode(), None).media_type == mt.OCI_MANIFEST


@pytest.mark.parametrize("data", [b"not json", b"[]", json.dumps(image(schemaVersion=1)).encode(),
                                  json.dumps(image(layers="x")).encode(),
                                  json.dumps(image(config={"digest": "sha256:abc", "size": 1,
                                                           "mediaType": "x"})).encode()])
def test_invalid_documents(data: bytes) -> None:
    """Non-JSON, non-objects, wrong schema versions, bad layers and bad digests are refused."""
    with pytest.raises(InvalidManifest):
        parse_manifest(data, None)


def test_unknown_media_type() -> None:
    """A document of an unknown manifest media type is unsupported."""
    with pytest.raises(UnsupportedMediaType):
        parse_manifest(json.dumps(image(mediaType="application/x-foo")).encode(), None)


def test_content_type_must_match_declared() -> None:
    """A Content-Type that contradicts the document's mediaType is refused."""
    with pytest.raises(InvalidManifest):
        parse_manifest(json.dumps(image()).encode(), mt.DOCKER_MANIFEST)


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ('{"a":', "}")])
def test_deep_nesting_is_invalid_not_a_crash(depth: int, opener: str, closer: str) -> None:
    """A document nested deeper than MAX_DEPTH is InvalidManifest, found before parsing (no RecursionError)."""
    with pytest.raises(InvalidManifest, match="nested deeper"):
        parse_manifest((opener * depth + "1" + closer * depth).encode(), None)


def test_nesting_scan_skips_brackets_in_strings() -> None:
    """Brackets inside JSON strings, escaped quotes included, do not count towards the depth."""
    assert not nesting_exceeds(json.dumps({"a": "[[[[{{{{" * 50, "b": 'x\\"[[[' * 50}).encode(), MAX_DEPTH)
    assert nesting_exceeds(b"[" * 3 + b"]" * 3, 2) and not nesting_exceeds(b"[" * 3 + b"]" * 3, 3)
    assert not nesting_exceeds(b'[["]]]]]]]"], ["[[[[[["]]', 2)


def test_annotations_keep_their_content() -> None:
    """An ordinary manifest with long annotation values is not mistaken for a deep one."""
    doc = image(annotations={f"k{i}": "[" * 100 for i in range(100)})
    assert parse_manifest(json.dumps(doc).encode(), None).annotations == doc["annotations"]


def index(entry: dict[str, Any]) -> bytes:
    child = {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 5, **entry}
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [child]}).encode()


@pytest.mark.parametrize("entry", [
    {"platform": "linux/amd64"}, {"platform": 7}, {"platform": ["linux"]}, {"platform": True},
    {"platform": {"architecture": 1, "os": "linux"}}, {"platform": {"architecture": "amd64", "os": ["linux"]}},
    {"platform": {"architecture": "amd64", "os": "linux", "os.features": "x"}},
    {"platform": {"architecture": "amd64", "os": "linux", "features": [1]}},
    {"platform": {"architecture": "amd64", "os": "linux", "variant": 8}},
    {"annotations": {"a": 1}}, {"annotations": ["a"]}, {"artifactType": 5}, {"urls": "http://x"}, {"urls": [1]},
    {"data": 5}, {"size": 2**63}, {"size": 1.5},
])
def test_descriptor_fields_of_the_wrong_type_are_refused(entry: dict[str, Any]) -> None:
    """Descriptor fields must have the image spec's types: platform an object of strings, annotations a string
    map, artifactType a string, urls a list of strings, size a 64-bit integer."""
    with pytest.raises(InvalidManifest):
        parse_manifest(index(entry), None)


def test_well_formed_optional_fields_and_nulls_are_accepted() -> None:
    """Every optional descriptor field of the right type, or null, is accepted, and the platform kept."""
    platform = {"architecture": "arm64", "os": "linux", "variant": "v8", "os.version": "1",
                "os.features": ["a"], "features": ["b"]}
    m = parse_manifest(index({"platform": platform, "annotations": {"a": "b"}, "artifactType": "x/y",
                              "urls": ["https://example.com/blob"], "data": "e30="}), None)
    assert m.manifests[0].platform == platform
    assert parse_manifest(index({"platform": None, "annotations": None, "urls": None}), None).manifests


@pytest.mark.parametrize("extra", [{"annotations": {"a": 1}}, {"annotations": "x"}, {"artifactType": ["x"]}])
def test_manifest_level_fields_of_the_wrong_type_are_refused(extra: dict[str, Any]) -> None:
    """The manifest's own annotations and artifactType are checked like a descriptor's."""
    with pytest.raises(InvalidManifest):
        parse_manifest(json.dumps(image(**extra)).encode(), None)


@pytest.mark.parametrize("data", [
    b"not json", b"[]", b"[" * 100_000, b'{"manifests": "x"}', b'{"manifests": [1, "a", null]}',
    json.dumps({"manifests": [{"platform": "linux"}, {"platform": ["amd64"]}, {"platform": 5}]}).encode(),
    json.dumps({"manifests": [{"platform": {"os": "linux", "architecture": "amd64"}, "digest": 5}]}).encode(),
    json.dumps({"manifests": [{"platform": {"os": "linux", "architecture": "amd64"}, "digest": "x"}]}).encode(),
])
def test_platform_child_reads_anything_without_raising(data: bytes) -> None:
    """Stored content of any shape gives no linux/amd64 entry, never an exception."""
    assert platform_child(data, "linux", "amd64") is None


def test_platform_child_finds_the_entry() -> None:
    """The first entry whose platform matches names the child manifest."""
    doc = {"manifests": [{"platform": "odd", "digest": D2},
                         {"platform": {"os": "linux", "architecture": "arm64"}, "digest": D2},
                         {"platform": {"os": "linux", "architecture": "amd64"}, "digest": D1}]}
    assert str(platform_child(json.dumps(doc).encode(), "linux", "amd64")) == D1
