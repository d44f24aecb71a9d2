"""Go durations and sizes as config.yml spells them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k3sreg.config.units import duration_seconds, format_duration, parse_go_duration, size_bytes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("168h", 168 * 3600),
        ("24h", 86400),
        ("5m", 300),
        ("1h30m", 5400),
        ("300ms", 0.3),
        ("10s", 10),
        ("1.5h", 5400),
        ("2h45m30.5s", 2 * 3600 + 45 * 60 + 30.5),
        ("100us", 100e-6),
        ("100µs", 100e-6),
        ("7ns", 7e-9),
        ("0", 0),
        ("+5s", 5),
    ],
)
def test_go_duration_strings(text: str, seconds: float) -> None:
    """Every unit Go's time.ParseDuration knows is read, including fractions and compound forms."""
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 m", "1d", "h", "1h-5m", "1.2.3s", "5M"])
def test_bad_duration_strings(text: str) -> None:
    """Strings Go rejects are rejected, with an example of a good value in the message."""
    with pytest.raises(ValueError, match="expected a duration such as"):
        duration_seconds(text)


def test_integers_are_nanoseconds_as_in_go() -> None:
    """A bare integer is nanoseconds, as Go's YAML decoder reads a time.Duration; 0 is zero."""
    assert duration_seconds(10_000_000_000) == 10.0
    assert duration_seconds(0) == 0.0


def test_small_bare_integer_is_refused_as_a_likely_mistake() -> None:
    """`3600` (3.6 microseconds in Go) is refused with the fix spelled out."""
    with pytest.raises(ValueError, match=re.escape("3600ns; write the unit, e.g. '3600s'")):
        duration_seconds(3600)


def test_negative_and_non_scalar_durations_are_refused() -> None:
    """Negative durations, booleans, floats without a unit and mappings are refused."""
    for bad in ("-5s", True, 1.5, {"a": 1}, None):
        with pytest.raises(ValueError):
            duration_seconds(bad)


@pytest.mark.parametrize(
    ("value", "n"),
    [
        (4194304, 4194304),
        ("4MiB", 4 * 1024 * 1024),
        ("4mi", 4 * 1024 * 1024),
        ("512M", 512_000_000),
        ("512MB", 512_000_000),
        ("1.5GiB", int(1.5 * 1024**3)),
        ("10k", 10_000),
        ("2Ti", 2 * 1024**4),
        ("100", 100),
        ("100B", 100),
        (" 8 KiB ", 8192),
        (0, 0),
    ],
)
def test_sizes(value: object, n: int) -> None:
    """Sizes are bytes, SI units are powers of 1000 and binary (Ki, MiB) ones powers of 1024."""
    assert size_bytes(value) == n


@pytest.mark.parametrize("value", ["4 megs", "MiB", "-1", -1, True, 1.5, "4XB", [1]])
def test_bad_sizes(value: object) -> None:
    """Anything but a non-negative byte count or number-with-unit is refused."""
    with pytest.raises(ValueError, match="size"):
        size_bytes(value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (0.3, "300ms"), (5400, "1h30m"), (604800, "168h"), (90.5, "1m30.5s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    """Seconds are spelled back in Go's style."""
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(["h", "m", "s", "ms"]))
def test_duration_round_trip(n: int, unit: str) -> None:
    """Formatting a parsed duration and parsing it again gives the same number of seconds."""
    seconds = parse_go_duration(f"{n}{unit}")
    assert parse_go_duration(format_duration(seconds)) == pytest.approx(seconds)
