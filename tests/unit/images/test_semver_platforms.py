"""Tag filters by semantic-version range, and platform matching as containerd does it."""

from __future__ import annotations

import pytest

from k3sreg.images.platforms import Platform, wanted
from k3sreg.images.semver import SemverRange

TAGS = ["1.24", "1.25", "1.25.3", "v1.27.9", "1.28.0", "1.28.0-rc.1", "2.0.0", "latest", "3.5.17"]


@pytest.mark.parametrize(("rng", "expected"), [
    (">=1.25 <1.28", ["1.25", "1.25.3", "v1.27.9"]),
    (">=1.25, <1.28", ["1.25", "1.25.3", "v1.27.9"]),
    ("^1.25", ["1.25", "1.25.3", "v1.27.9", "1.28.0"]),
    ("~1.25.1", ["1.25.3"]),
    ("1.x", ["1.24", "1.25", "1.25.3", "v1.27.9", "1.28.0"]),
    (">=2 || 1.24", ["1.24", "2.0.0", "3.5.17"]),
    (">=1.28.0-rc.1 <1.29", ["1.28.0", "1.28.0-rc.1"]),
    ("> 1.28", ["2.0.0", "3.5.17"]),
    ("<= 1.25", ["1.24", "1.25", "1.25.3"]),
])
def test_ranges_select_versions_and_leave_prereleases_out(rng: str, expected: list[str]) -> None:
    """Comparisons, ^, ~, wildcards and ||; a pre-release only when the range names one."""
    assert [t for t in TAGS if SemverRange(rng).matches(t)] == expected


def test_unreadable_range_is_an_error() -> None:
    """A range that is not one raises ValueError naming the part."""
    with pytest.raises(ValueError, match="banana"):
        SemverRange(">= banana")


def test_platforms_match_with_default_variants() -> None:
    """arm64 is arm64/v8, aarch64 is arm64; entries without a platform go only without a filter."""
    arm64 = Platform.parse("linux/arm64")
    assert arm64.matches(Platform.parse("linux/aarch64/v8"))
    assert not Platform.parse("linux/arm/v7").matches(Platform.parse("linux/arm/v6"))
    assert wanted({"os": "linux", "architecture": "arm64", "variant": "v8"}, (arm64,))
    assert not wanted({"os": "linux", "architecture": "amd64"}, (arm64,))
    assert not wanted(None, (arm64,)) and wanted(None, None)
