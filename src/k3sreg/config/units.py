"""Durations and sizes as config.yml spells them, turned into seconds and bytes.

Durations follow Go's `time.ParseDuration` ("300ms", "5m", "1h30m", "168h"; units ns, us/µs, ms, s, m, h),
because Distribution's typed fields are Go durations. A bare integer is read as nanoseconds, as Go's YAML
decoder does for `time.Duration`; a bare integer under one millisecond (other than 0) is refused as a likely
mistake (someone meant seconds). Sizes are bytes, or a number with a unit: B, K/KB, M/MB, G/GB, T/TB (powers
of 1000) or Ki/KiB, Mi/MiB, Gi/GiB, Ti/TiB (powers of 1024), case-insensitive.
"""

from __future__ import annotations

import re

from k3sreg.problems import show_value

_DURATION_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NANOS_FLOOR = 1_000_000

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string such as "1h30m" or "300ms"; ValueError with the reason otherwise."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def duration_seconds(value: object) -> float:
    """Seconds in a config value: a Go duration string, or an integer of nanoseconds as Go reads it.

    Raises ValueError whose message is the user-facing fix.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a duration such as '30s', '5m' or '1h30m', got {show_value(value)}")
    if isinstance(value, int):
        if 0 < abs(value) < _NANOS_FLOOR:
            raise ValueError(
                f"a bare number is read as nanoseconds, as Go does, so {value} means {value}ns; "
                f"write the unit, e.g. '{value}s'"
            )
        seconds = value / 1e9
    elif isinstance(value, float):
        raise ValueError(f"expected a duration with a unit such as '{value}s', got {value}")
    elif isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError:
            raise ValueError(f"expected a duration such as '30s', '5m' or '1h30m', got {value!r}") from None
    else:
        raise ValueError(f"expected a duration such as '30s', '5m' or '1h30m', got {show_value(value)}")
    if seconds < 0:
        raise ValueError(f"expected a duration of zero or more, got {show_value(value)}")
    return seconds


def size_bytes(value: object) -> int:
    """Bytes in a config value: an integer, or a string such as "4MiB", "512M", "1.5GB".

    Raises ValueError whose message is the user-facing fix.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a size such as 4194304, '4MiB' or '512M', got {show_value(value)}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE.match(value)
        if m is None:
            raise ValueError(f"expected a size such as 4194304, '4MiB' or '512M', got {value!r}")
        number, unit = float(m.group(1)), (m.group(2) or "b").lower()
        if unit == "b":
            factor = 1
        else:
            base = 1024 if "i" in unit else 1000
            factor = base ** _SIZE_POWERS[unit[0]]
        n = int(number * factor)
    else:
        raise ValueError(f"expected a size such as 4194304, '4MiB' or '512M', got {show_value(value)}")
    if n < 0:
        raise ValueError(f"expected a size of zero or more, got {show_value(value)}")
    return n


def format_duration(seconds: float) -> str:
    """A short Go-style spelling of `seconds` ("168h", "1h30m", "300ms"), for messages and docs."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    whole = int(seconds)
    parts = []
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    frac = seconds - whole
    if secs or frac or not parts:
        parts.append(f"{secs + frac:g}s")
    return "".join(parts)
