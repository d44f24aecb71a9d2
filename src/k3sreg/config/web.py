"""`web` (k3sreg's own): the web page that `serve` shows at `path`, and how often it samples the savings."""

from __future__ import annotations

from pydantic import field_validator

from k3sreg.config.problems import problem
from k3sreg.config.values import Duration, GoStr, Section

RESERVED = ("/v2", "/metrics", "/debug", "/auth")
"""Paths the registry itself answers: the page may not sit on or under them."""


class WebSettings(Section):
    """`web`: the page (on by default; `enabled: false` turns it off), where it is, and how often the savings
    plot takes a point."""

    enabled: bool = True
    path: GoStr = "/"
    sampleinterval: Duration = 60.0

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        # One spelling: a leading slash, no trailing one ("/" for the root).
        value = "/" + value.strip().strip("/")
        if value != "/" and any(value == r or value.startswith(r + "/") for r in RESERVED):
            raise problem(f"{value!r} is taken by the registry itself ({', '.join(RESERVED)}); choose another path "
                          "such as '/ui'")
        if any(c in value for c in "?#{}% "):
            raise problem(f"expected a URL path such as '/' or '/ui', got {value!r}")
        return value

    @field_validator("sampleinterval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 1.0:
            raise problem("expected a duration of a second or more such as '1m'")
        return value
