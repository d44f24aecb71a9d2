"""Semantic-version ranges for tag filters: `>=1.25 <1.28`, `^3.5`, `~1.27.2`, `1.x`, `>=2 || 1.2.3`.

The syntax is the one skopeo's `images-by-semver` and Helm use: comma or space separated comparisons (all must
hold), alternatives joined by `||`; `^` keeps the first non-zero component, `~` the minor version; `x`, `X` and
`*` are wildcards. Tags are read leniently, as registries name them: a leading `v`, and missing minor or patch
(`1.27` is 1.27.0). A tag with a pre-release (`1.28.0-rc.1`) matches only a range that names a pre-release of
the same major.minor.patch, so release filters never pick up release candidates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?$")
_COMPARISON = re.compile(r"(\^|~>?|>=|<=|!=|=|>|<)?\s*(\S+)")


@dataclass(frozen=True, order=True)
class Version:
    """A parsed version; pre-release identifiers sort before the release, numerically where they are numbers."""

    major: int
    minor: int
    patch: int
    release: tuple[int, tuple[tuple[int, int | str], ...]]  # (1, ()) for a release, (0, ids) for a pre-release

    @property
    def prerelease(self) -> bool:
        return self.release[0] == 0

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """The version a tag names, or None when it names none."""
        m = _VERSION.match(text)
        if m is None:
            return None
        return cls(int(m[1]), int(m[2] or 0), int(m[3] or 0), _release(m[4]))


def _release(pre: str | None) -> tuple[int, tuple[tuple[int, int | str], ...]]:
    if not pre:
        return (1, ())
    ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return (0, ids)


@dataclass(frozen=True)
class _Bound:
    op: str
    version: Version
    named: bool = False  # the user wrote this pre-release (not a bound made up from a partial version)

    def holds(self, v: Version) -> bool:
        return {"=": v == self.version, "!=": v != self.version, ">": v > self.version, ">=": v >= self.version,
                "<": v < self.version, "<=": v <= self.version}[self.op]


class SemverRange:
    """A parsed range; `matches(tag)` says whether the tag's version is in it (False for non-version tags)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._alternatives: list[list[_Bound]] = []
        for alternative in text.split("||"):
            bounds: list[_Bound] = []
            cleaned = re.sub(r"(\^|~>?|>=|<=|!=|=|>|<)\s+", r"\1", alternative.replace(",", " "))
            for word in cleaned.split():
                m = _COMPARISON.fullmatch(word)
                if m is None:
                    raise ValueError(f"cannot read {word!r} in the version range {text!r}")
                bounds.extend(_bounds(m[1] or "=", m[2], text))
            if not bounds:
                raise ValueError(f"empty alternative in the version range {text!r}")
            self._alternatives.append(bounds)

    def matches(self, tag: str) -> bool:
        """Whether `tag` names a version inside the range."""
        v = Version.parse(tag)
        if v is None:
            return False
        for bounds in self._alternatives:
            if v.prerelease and not any(b.version.prerelease and b.version.core == v.core and b.named
                                        for b in bounds):
                continue
            if all(b.holds(v) for b in bounds):
                return True
        return False


def _bounds(op: str, text: str, whole: str) -> list[_Bound]:
    m = _PARTIAL.match(text)
    if m is None:
        raise ValueError(f"{text!r} in the version range {whole!r} is not a version")
    parts = [None if p is None or p in "xX*" else int(p) for p in (m[1], m[2], m[3])]
    known = 0
    while known < 3 and parts[known] is not None:
        known += 1
    nums = [p or 0 for p in parts]
    low = Version(nums[0], nums[1], nums[2], _release(m[4]))
    if known == 0:
        return [_Bound(">=", Version(0, 0, 0, (0, ((0, 0),))))] if op in ("=", "^", "~", "~>", ">=") else []
    if op in ("^", "~", "~>") or (op == "=" and known < 3):
        if op == "^":
            first = next((i for i in range(known) if nums[i] != 0), known - 1)
            up = min(first, known - 1)
        elif op in ("~", "~>"):
            up = 1 if known >= 2 else 0
        else:
            up = known - 1
        high = nums[:up + 1]
        high[up] += 1
        high += [0] * (3 - len(high))
        return [_Bound(">=", low, bool(m[4])), _Bound("<", Version(high[0], high[1], high[2], (0, ((0, 0),))))]
    if op == ">" and known < 3:
        high = nums[:known]
        high[-1] += 1
        high += [0] * (3 - len(high))
        return [_Bound(">=", Version(high[0], high[1], high[2], (0, ((0, 0),))))]
    if op == "<=" and known < 3:
        high = nums[:known]
        high[-1] += 1
        high += [0] * (3 - len(high))
        return [_Bound("<", Version(high[0], high[1], high[2], (0, ((0, 0),))))]
    if op == "<":
        return [_Bound("<", Version(low.major, low.minor, low.patch, low.release if m[4] else (0, ((0, 0),))))]
    return [_Bound(op, low, bool(m[4]))]
