"""`storage`: exactly one driver (filesystem, inmemory, s3) and the driver-independent options, as Distribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from k3sreg.config.problems import problem
from k3sreg.config.values import Duration, GoStr, Section, Size, go_str
from k3sreg.problems import show_value

DRIVERS = ("filesystem", "inmemory", "s3")
"""The storage drivers k3sreg has."""
OTHER_DRIVERS = ("azure", "gcs", "swift", "oss", "s3aws")
"""Drivers Distribution has (had) that k3sreg does not: reported as such, not as unknown keys."""

MiB = 1024 * 1024
_SWITCHED = ("gc", "scrub")  # sections that a bare key turns on


class FilesystemSettings(Section):
    """`storage.filesystem`: Distribution's on-disk layout under `rootdirectory`."""

    rootdirectory: Path = Path("/var/lib/registry")
    maxthreads: int = 100

    @field_validator("rootdirectory", mode="before")
    @classmethod
    def _root(cls, value: Any) -> Any:
        value = go_str(value)
        if not isinstance(value, str | Path) or not str(value).strip():
            raise problem(f"expected a directory path, got {show_value(value)}")
        return value

    @field_validator("maxthreads")
    @classmethod
    def _threads(cls, value: int) -> int:
        # Distribution raises anything below 25 to 25 rather than failing.
        return max(value, 25)


class InMemorySettings(Section):
    """`storage.inmemory`: everything in process memory, lost on exit (tests, demos)."""


class S3Settings(Section):
    """`storage.s3`: Distribution's S3 driver keys; the same bucket layout as registry:2."""

    accesskey: GoStr = ""
    secretkey: GoStr = ""
    sessiontoken: GoStr = ""
    region: GoStr
    regionendpoint: GoStr = ""
    forcepathstyle: bool = False
    bucket: GoStr
    encrypt: bool = False
    keyid: GoStr = ""
    secure: bool = True
    skipverify: bool = False
    v4auth: bool = True
    chunksize: Size = 10 * MiB
    multipartcopychunksize: Size = 32 * MiB
    multipartcopymaxconcurrency: int = Field(default=100, ge=1)
    multipartcopythresholdsize: Size = 32 * MiB
    rootdirectory: GoStr = ""
    storageclass: GoStr = "STANDARD"
    objectacl: GoStr = "private"
    useragent: GoStr = ""
    usedualstack: bool = False
    accelerate: bool = False
    loglevel: GoStr = "off"
    redirectendpoint: GoStr = ""

    @field_validator("chunksize")
    @classmethod
    def _chunk(cls, value: int) -> int:
        if value < 5 * MiB:
            raise problem(f"S3 parts must be at least 5MiB (5242880), got {value}")
        return value


class DeleteSettings(Section):
    """`storage.delete`: allow DELETE of blobs and manifests (405 UNSUPPORTED otherwise)."""

    enabled: bool = False


class RedirectSettings(Section):
    """`storage.redirect`: `disable: true` serves S3 blobs through the registry instead of redirecting."""

    disable: bool = False


class CacheSettings(Section):
    """`storage.cache`: the blob descriptor cache."""

    blobdescriptor: Literal["inmemory", "redis"] | None = None
    blobdescriptorsize: int = Field(default=10000, ge=0)

    @field_validator("blobdescriptor", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        return None if value == "" else value


class UploadPurgingSettings(Section):
    """`storage.maintenance.uploadpurging`: remove upload sessions older than `age`, every `interval`."""

    enabled: bool = True
    age: Duration = 168 * 3600.0
    interval: Duration = 24 * 3600.0
    dryrun: bool = False


class ReadOnlySettings(Section):
    """`storage.maintenance.readonly`: refuse every write (pushes, deletes) while enabled."""

    enabled: bool = False


class MaintenanceSettings(Section):
    """`storage.maintenance`."""

    uploadpurging: UploadPurgingSettings = Field(default_factory=UploadPurgingSettings)
    readonly: ReadOnlySettings = Field(default_factory=ReadOnlySettings)


class GCSettings(Section):
    """`storage.gc` (k3sreg's): collect garbage in the background while serving, as `garbage-collect` does."""

    enabled: bool = True
    interval: Duration = 24 * 3600.0
    delay: Duration = 3600.0
    deleteuntagged: bool = False
    dryrun: bool = False

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value <= 0:
            raise problem("must be longer than 0")
        return value


class ScrubSettings(Section):
    """`storage.scrub` (k3sreg's): re-hash every blob in the background, at most `rate` bytes a second."""

    enabled: bool = True
    interval: Duration = 7 * 24 * 3600.0
    rate: Size = 8 * MiB
    quarantine: bool = False

    @field_validator("interval", "rate")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise problem("must be more than 0")
        return value


class TagSettings(Section):
    """`storage.tag`: how many tag lookups may run at once (None: no limit)."""

    concurrencylimit: int | None = Field(default=None, ge=0)


class StorageSettings(Section):
    """`storage`: exactly one driver (filesystem, inmemory or s3) plus the driver-independent options."""

    filesystem: FilesystemSettings | None = None
    inmemory: InMemorySettings | None = None
    s3: S3Settings | None = None
    delete: DeleteSettings = Field(default_factory=DeleteSettings)
    redirect: RedirectSettings = Field(default_factory=RedirectSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    tag: TagSettings = Field(default_factory=TagSettings)
    gc: GCSettings | None = None
    scrub: ScrubSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # `storage: inmemory` (a bare string) and `inmemory:` (no value) both select a driver, as in Distribution;
        # `gc:` and `scrub:` with no value turn those on with their defaults.
        if isinstance(data, str):
            return {data: {}}
        if isinstance(data, dict):
            keep = set(DRIVERS) | set(_SWITCHED) | (set(data) - set(cls.model_fields))
            return {k: {} if v is None and k in keep else v for k, v in data.items() if v is not None or k in keep}
        return data

    @model_validator(mode="after")
    def _one_driver(self) -> StorageSettings:
        chosen = [k for k in DRIVERS if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise problem(_driver_count_message(chosen))
        return self

    @property
    def driver(self) -> Literal["filesystem", "inmemory", "s3"]:
        """The configured driver's name."""
        if self.s3 is not None:
            return "s3"
        if self.inmemory is not None:
            return "inmemory"
        return "filesystem"


def _driver_count_message(chosen: list[str]) -> str:
    if chosen:
        return f"exactly one storage driver is required, got {len(chosen)}: {', '.join(chosen)}"
    return "exactly one storage driver is required (filesystem, inmemory or s3), got none"


def storage_problems(raw: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems with the driver choice in a raw `storage` value: none, several, or one k3sreg lacks."""
    if isinstance(raw, str):
        raw = {raw: {}}
    if not isinstance(raw, dict):
        return []
    chosen = [k for k in DRIVERS if k in raw]
    foreign = [k for k in raw if k in OTHER_DRIVERS]
    found: list[tuple[tuple[str | int, ...], str]] = [
        (("storage", k), f"the {k} driver is not supported by k3sreg; use filesystem, inmemory or s3") for k in foreign
    ]
    unknown = [k for k in raw if k not in StorageSettings.model_fields and k not in OTHER_DRIVERS]
    # A misspelt driver ("filesytem") is reported as an unknown key with a suggestion; "none" would repeat it.
    if len(chosen) > 1 or (not chosen and not foreign and not unknown):
        found.append((("storage",), _driver_count_message(chosen)))
    return found
