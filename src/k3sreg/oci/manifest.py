"""Parse a pushed manifest: what it is, what it references, what it is a referrer of.

The bytes are never rewritten: the registry stores and serves exactly what was pushed, so the digest the
client computed is the digest everyone sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest, InvalidDigest


class InvalidManifest(ValueError):
    """The bytes are not a manifest k3sreg accepts; the message says why."""


class UnsupportedMediaType(InvalidManifest):
    """A well-formed document of a manifest type k3sreg does not store."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor (media type, digest, size, and the optional fields referrers need)."""

    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The descriptor as it appears in an index."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """What the registry needs to know of a manifest."""

    media_type: str
    blobs: list[Descriptor] = field(default_factory=list)        # config and layers: must exist as blobs
    manifests: list[Descriptor] = field(default_factory=list)    # index children: must exist as manifests
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES


def _descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidManifest(f"{where}: expected an object")
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"{where}.mediaType: missing or not a string")
    if not isinstance(digest, str):
        raise InvalidManifest(f"{where}.digest: missing or not a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{where}.size: missing or not a non-negative integer")
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest as e:
        raise InvalidManifest(f"{where}.digest: {e}") from None
    annotations = obj.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise InvalidManifest(f"{where}.annotations: must map strings to strings")
    artifact_type = obj.get("artifactType")
    platform = obj.get("platform")
    return Descriptor(
        media_type,
        parsed,
        size,
        artifact_type if isinstance(artifact_type, str) else None,
        annotations,
        platform if isinstance(platform, dict) else None,
    )


def parse_manifest(data: bytes, content_type: str | None) -> Manifest:
    """Validate `data` as a manifest; `content_type` is the request's Content-Type header, if any."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidManifest(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidManifest("manifest must be a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest("mediaType must be a string")
    ctype = (content_type or "").split(";")[0].strip() or None
    if ctype in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED) or declared in (mt.DOCKER_SCHEMA1,
                                                                             mt.DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedMediaType("Docker schema 1 manifests are deprecated and not accepted")
    if declared and ctype and ctype in mt.MANIFEST_TYPES and declared != ctype:
        raise InvalidManifest(f"mediaType {declared!r} does not match Content-Type {ctype!r}")
    media_type = declared or ctype or _guess(doc)
    if media_type not in mt.MANIFEST_TYPES:
        raise UnsupportedMediaType(f"unsupported manifest media type {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise InvalidManifest("schemaVersion must be 2")

    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None
    annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else None
    if media_type in mt.INDEXES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise InvalidManifest("manifests: missing or not a list")
        return Manifest(media_type, [], [_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children)],
                        subject, artifact_type, annotations)
    config = doc.get("config")
    layers = doc.get("layers")
    if config is None:
        raise InvalidManifest("config: missing")
    if not isinstance(layers, list):
        raise InvalidManifest("layers: missing or not a list")
    cfg = _descriptor(config, "config")
    blobs = [cfg] + [_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers)]
    if artifact_type is None and cfg.media_type != mt.OCI_EMPTY and media_type == mt.OCI_MANIFEST:
        # Referrers report the config media type when a manifest has no artifactType of its own.
        artifact_type = cfg.media_type
    return Manifest(media_type, blobs, [], subject, artifact_type, annotations)


def _guess(doc: dict[str, Any]) -> str:
    """OCI allows mediaType to be absent: tell an index from an image by its fields."""
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc:
        return mt.OCI_MANIFEST
    raise InvalidManifest("cannot tell the manifest type: no mediaType, config or manifests")
