"""`tags`: the most tags one `/v2/<name>/tags/list` page returns."""

from __future__ import annotations

from pydantic import Field, field_validator

from k3sreg.config.catalog import PAGE_SIZE
from k3sreg.config.values import Section


class TagsSettings(Section):
    """`tags`: the most tags one `/v2/<name>/tags/list` page returns."""

    maxtags: int = Field(default=PAGE_SIZE, ge=0)

    @field_validator("maxtags")
    @classmethod
    def _default(cls, value: int) -> int:
        return value or PAGE_SIZE
