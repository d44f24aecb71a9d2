"""`catalog`: the most repositories one `/v2/_catalog` page returns."""

from __future__ import annotations

from pydantic import field_validator

from k3sreg.config.values import Section

PAGE_SIZE = 1000
"""Distribution's default page of the catalog and of tag lists; 0 or less in config.yml means this."""


class CatalogSettings(Section):
    """`catalog`: the most repositories one `/v2/_catalog` page returns."""

    maxentries: int = PAGE_SIZE

    @field_validator("maxentries")
    @classmethod
    def _default(cls, value: int) -> int:
        return value if value > 0 else PAGE_SIZE
