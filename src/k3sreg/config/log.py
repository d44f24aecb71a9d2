"""`log` (and the deprecated top-level `loglevel`): level, formatter, fields, access log."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from k3sreg.config.values import Section


def normalise_level(value: Any) -> Any:
    """Log levels as Distribution (logrus) accepts them: any case, and `warning` for `warn`."""
    if isinstance(value, str):
        low = value.strip().lower()
        return "warn" if low == "warning" else low
    return value


class AccessLogSettings(Section):
    """`log.accesslog`."""

    disabled: bool = False


class LogSettings(Section):
    """`log`: level, formatter, static fields added to every line, access log switch."""

    level: Literal["error", "warn", "info", "debug"] = "info"
    formatter: Literal["text", "json", "logstash"] = "text"
    fields: dict[str, Any] = Field(default_factory=dict)
    accesslog: AccessLogSettings = Field(default_factory=AccessLogSettings)
    hooks: list[Any] = Field(default_factory=list)
    reportcaller: bool = False

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return normalise_level(value)

    @field_validator("formatter", mode="before")
    @classmethod
    def _formatter(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value
