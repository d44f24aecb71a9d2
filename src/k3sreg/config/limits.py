"""`limits` (k3sreg's own): request sizes and body timeouts; Distribution hard-codes some of these.

Each default lives here and only here: the server and the upstream client receive the values from the settings.
"""

from __future__ import annotations

from pydantic import field_validator

from k3sreg.config.problems import problem
from k3sreg.config.values import Duration, Section, Size

MANIFEST_SIZE = 4 * 1024 * 1024
"""The largest manifest accepted on push or from an upstream, as Distribution's 4 MiB."""


class LimitsSettings(Section):
    """`limits`: request sizes and body timeouts (k3sreg's; Distribution hard-codes some of these)."""

    manifestsize: Size = MANIFEST_SIZE
    blobsize: Size = 0
    bodytimeout: Duration = 60.0

    @field_validator("manifestsize")
    @classmethod
    def _manifest(cls, value: int) -> int:
        if value <= 0:
            raise problem("expected a size above zero such as '4MiB'")
        return value

    @field_validator("bodytimeout")
    @classmethod
    def _body(cls, value: float) -> float:
        if value <= 0:
            raise problem("expected a duration above zero such as '60s'")
        return value
