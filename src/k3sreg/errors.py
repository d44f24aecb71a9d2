"""The one exception tree of k3sreg.

    K3sregError
    ├── RegistryError            an API failure: carries its OCI error code and HTTP status
    │   ├── NameInvalid, NameUnknown, BlobUnknown, BlobUploadUnknown, UploadBusy,
    │   │   DigestInvalid, ManifestBlobUnknown, ManifestInvalid, ManifestUnknown, SizeInvalid,
    │   │   TagInvalid, RangeInvalid, Unsupported, Denied, Unauthorized, TooManyRequests,
    │   │   Unavailable
    ├── ConfigError              settings that cannot be used: every problem at once
    └── UsageError               a CLI input problem, shown as one line

The server maps RegistryError to the OCI error JSON in one middleware; the CLI prints the other two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class K3sregError(Exception):
    """Base of every error k3sreg raises on purpose."""


class RegistryError(K3sregError):
    """An OCI Distribution API error: `code` and `status` decide the response."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The `{"errors": [...]}` document of the spec."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return {"errors": [err]}


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, default_message = "DIGEST_INVALID", 400, "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    code, status, default_message = "MANIFEST_BLOB_UNKNOWN", 400, "manifest references unknown blobs"


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = "SIZE_INVALID", 400, "provided length did not match content length"


class TagInvalid(RegistryError):
    code, status, default_message = "TAG_INVALID", 400, "manifest tag did not match URI"


class RangeInvalid(RegistryError):
    code, status, default_message = "RANGE_INVALID", 416, "invalid content range"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class TooLarge(RegistryError):
    """A body over the configured limit; the spec has no code of its own, Distribution says SIZE_INVALID."""

    code, status, default_message = "SIZE_INVALID", 413, "request body too large"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class Unavailable(RegistryError):
    """An upstream or storage backend could not answer; clients should retry or move on."""

    code, status, default_message = "UNAVAILABLE", 503, "service unavailable"


class ConfigError(K3sregError):
    """Settings that cannot be used. `problems` lists every one, each naming its key path and the fix."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class UsageError(K3sregError):
    """Bad CLI input, shown to the user as one line."""


class ManifestTooLarge(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 413, "manifest too large"


class PaginationNumberInvalid(RegistryError):
    code, status, default_message = "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"


class BodyTimeout(RegistryError):
    """A request body that stopped arriving; the partial chunk is dropped, the session kept."""

    code, status, default_message = "BLOB_UPLOAD_INVALID", 408, "request body timed out"


class StorageFull(RegistryError):
    """The storage has no room left (ENOSPC, EDQUOT).

    507 Insufficient Storage names the problem even to clients that show only the status line of a 5xx (Docker
    Engine, containerd); the code is Distribution's UNAVAILABLE, as the condition passes once space is freed
    (garbage collection, cache eviction), and clients that read the body (skopeo, podman) show the message."""

    code, status, default_message = "UNAVAILABLE", 507, "the registry's storage is full"


class UploadBusy(RegistryError):
    """Another request is still working on this upload session (requests on one session run one at a time).

    409 Conflict is what HTTP has for this; Docker Engine reads 4xx bodies and retries BLOB_UPLOAD_INVALID."""

    code, status, default_message = "BLOB_UPLOAD_INVALID", 409, \
        "another request is still writing to this upload session; retry once it has finished"


class StoragePathInvalid(NameInvalid):
    """A name that storage refuses to write: it would leave the storage root, or no file system can hold it."""

    default_message = "the name cannot be stored"
