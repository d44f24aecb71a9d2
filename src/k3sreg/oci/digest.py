"""Digests: `algorithm:encoded`, as in the OCI image spec. sha256 and sha512 are supported."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
# Every digest a registry is asked about is canonical: one regex match, then the checks below only explain
# what is wrong with the others (a blob HEAD spends most of its parsing time here otherwise).
_CANONICAL = re.compile(r"(?:(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128}))")


class InvalidDigest(ValueError):
    """The string is not a digest k3sreg can verify."""


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated digest; `str()` gives the canonical form."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse and validate; raises InvalidDigest naming what is wrong."""
        m = _CANONICAL.fullmatch(value)
        if m is not None:
            return cls(m[1], m[2]) if m[1] else cls(m[3], m[4])
        if not _GRAMMAR.match(value):
            raise InvalidDigest(f"invalid digest {value!r}: expected <algorithm>:<hex>")
        algorithm, encoded = value.split(":", 1)
        length = _ALGORITHMS.get(algorithm)
        if length is None:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r} (use sha256 or sha512)")
        if len(encoded) != length or not all(c in "0123456789abcdef" for c in encoded):
            raise InvalidDigest(f"invalid {algorithm} digest {value!r}: expected {length} lowercase hex digits")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of `data`."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_digest(reference: str) -> bool:
    """Whether a manifest reference is a digest (it contains ':'), not a tag."""
    return ":" in reference
