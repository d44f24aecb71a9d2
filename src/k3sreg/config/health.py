"""`health`: the checks behind Distribution's `/debug/health` (storage driver, files, HTTP, TCP)."""

from __future__ import annotations

from pydantic import Field

from k3sreg.config.values import Duration, GoStr, Section, StrList


class StorageDriverCheck(Section):
    """`health.storagedriver`: periodically check that the storage answers."""

    enabled: bool = False
    interval: Duration = 10.0
    threshold: int = Field(default=0, ge=0)


class FileCheck(Section):
    """`health.file[]`: unhealthy while `file` exists."""

    file: GoStr
    interval: Duration = 10.0
    threshold: int = Field(default=0, ge=0)


class HTTPCheck(Section):
    """`health.http[]`: unhealthy while `uri` does not answer `statuscode`."""

    uri: GoStr
    headers: dict[str, StrList] = Field(default_factory=dict)
    statuscode: int = 200
    timeout: Duration = 1.0
    interval: Duration = 10.0
    threshold: int = Field(default=0, ge=0)


class TCPCheck(Section):
    """`health.tcp[]`: unhealthy while `addr` refuses connections."""

    addr: GoStr
    timeout: Duration = 1.0
    interval: Duration = 10.0
    threshold: int = Field(default=0, ge=0)


class HealthSettings(Section):
    """`health`: checks behind Distribution's `/debug/health`."""

    storagedriver: StorageDriverCheck = Field(default_factory=StorageDriverCheck)
    file: list[FileCheck] = Field(default_factory=list)
    http: list[HTTPCheck] = Field(default_factory=list)
    tcp: list[TCPCheck] = Field(default_factory=list)
