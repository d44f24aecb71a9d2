"""Parse a pushed manifest: what it is, what it references, what it is a referrer of.

The bytes are never rewritten: the registry stores and serves exactly what was pushed, so the digest the
client computed is the digest everyone sees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest, InvalidDigest

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a manifest (real ones stay under 8)."""
_MAX_SIZE = 1 << 63
# A JSON string (skipped whole, so brackets inside do not count) or one bracket.
_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


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


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


# Optional fields of a manifest, of a descriptor and of a platform, with the type the image spec gives each;
# JSON null counts as absent, as it does for Distribution's decoder.
_Fields = dict[str, tuple[Callable[[Any], bool], str]]
_DOCUMENT: _Fields = {
    "annotations": (_string_map, "an object mapping strings to strings"),
    "artifactType": (lambda v: isinstance(v, str), "a string"),
}
_OPTIONAL: _Fields = {
    **_DOCUMENT,
    "urls": (_string_list, "a list of strings"),
    "data": (lambda v: isinstance(v, str), "a base64 string"),
}
_PLATFORM: _Fields = {
    "architecture": (lambda v: isinstance(v, str), "a string"),
    "os": (lambda v: isinstance(v, str), "a string"),
    "os.version": (lambda v: isinstance(v, str), "a string"),
    "variant": (lambda v: isinstance(v, str), "a string"),
    "os.features": (_string_list, "a list of strings"),
    "features": (_string_list, "a list of strings"),
}


def _check_fields(obj: dict[str, Any], fields: _Fields, where: str) -> None:
    for key, (valid, expected) in fields.items():
        value = obj.get(key)
        if value is not None and not valid(value):
            raise InvalidManifest(f"{where}.{key}: must be {expected}")


def _descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidManifest(f"{where}: expected an object")
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"{where}.mediaType: missing or not a string")
    if not isinstance(digest, str):
        raise InvalidManifest(f"{where}.digest: missing or not a string")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < _MAX_SIZE:
        raise InvalidManifest(f"{where}.size: missing or not a non-negative 64-bit integer")
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest as e:
        raise InvalidManifest(f"{where}.digest: {e}") from None
    _check_fields(obj, _OPTIONAL, where)
    platform = obj.get("platform")
    if platform is not None:
        if not isinstance(platform, dict):
            raise InvalidManifest(f"{where}.platform: must be an object with architecture and os")
        _check_fields(platform, _PLATFORM, f"{where}.platform")
    return Descriptor(media_type, parsed, size, obj.get("artifactType"), obj.get("annotations"), platform)


def load_json(data: bytes) -> Any:
    """`data` parsed as JSON; InvalidManifest for anything else, or for nesting deeper than MAX_DEPTH.

    The depth is checked on the bytes first: a hostile document nested 100,000 levels deep would otherwise
    exhaust the parser's recursion.
    """
    if nesting_exceeds(data, MAX_DEPTH):
        raise InvalidManifest(f"manifest is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidManifest(f"manifest is not valid JSON: {e}") from None


def nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether the arrays and objects of JSON `data` nest deeper than `limit` (brackets in strings do not count)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # every manifest of ordinary size ends here, without a scan
    depth = 0
    for m in _STRUCTURE.finditer(data):
        c = data[m.start()]
        if c == 0x5B or c == 0x7B:  # [ {
            depth += 1
            if depth > limit:
                return True
        elif c != 0x22:  # ] }, not a string
            depth -= 1
    return False


def platform_child(data: bytes, os: str, architecture: str) -> Digest | None:
    """The digest of the first entry of index `data` for `os`/`architecture`; None when there is none.

    Stored content is read with it (a registry:2 volume may hold anything), so it never raises.
    """
    try:
        doc = load_json(data)
    except InvalidManifest:
        return None
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        platform = entry.get("platform") if isinstance(entry, dict) else None
        if isinstance(platform, dict) and platform.get("os") == os and platform.get("architecture") == architecture:
            try:
                return Digest.parse(entry.get("digest"))
            except (InvalidDigest, TypeError):
                return None
    return None


def parse_manifest(data: bytes, content_type: str | None) -> Manifest:
    """Validate `data` as a manifest; `content_type` is the request's Content-Type header, if any."""
    doc = load_json(data)
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
    _check_fields(doc, _DOCUMENT, "manifest")
    artifact_type, annotations = doc.get("artifactType"), doc.get("annotations")
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
