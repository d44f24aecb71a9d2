"""Manifest parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from k3sreg.oci import mediatypes as mt
from k3sreg.oci.manifest import InvalidManifest, UnsupportedMediaType, parse_manifest

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
