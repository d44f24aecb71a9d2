"""Reading what upstream registries answer: error documents, tag pages, Retry-After, and
what went wrong, in words.

Pure functions, kept apart from the requests (`transport`, `registry`) so they are tested without a network.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
from typing import Any

import aiohttp

RATE_LIMIT_PAUSE = 10  # seconds without asking after a 429 that names no Retry-After
MAX_RATE_LIMIT_PAUSE = 3600


def reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return text or type(exc).__name__


def describe_failure(exc: BaseException, timeout: float) -> str:
    """Why a request to an upstream failed, for operators: the cause and the address, without aiohttp's
    internals (`ssl:default`, `[Connect call failed ...]`). `timeout` is the upstream's, in seconds."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"the TLS certificate of {exc.host}:{exc.port} does not verify: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {exc.host}: {_os_error_text(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS with {exc.host}:{exc.port} failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"{_os_error_text(exc.os_error)} (the proxy {exc.host}:{exc.port})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{_os_error_text(exc.os_error)} ({exc.host}:{exc.port})"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"no connection within {timeout:g} s"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return f"no data for {timeout:g} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the upstream closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the body broke off"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    return reason(exc)


def _os_error_text(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "connecting timed out"
    if exc.errno:
        text = os.strerror(exc.errno)
        return text[:1].lower() + text[1:]
    return reason(exc)


def attempts(n: int) -> str:
    """`after 3 attempts`, for messages that say how hard a request was tried."""
    return f"after {n} attempt{'' if n == 1 else 's'}"


def upstream_message(body: bytes) -> str | None:
    """The first `message` of an OCI error document, if the body is one."""
    try:
        doc: Any = json.loads(body)
        first = doc["errors"][0]
        return f"{first.get('code', '')}: {first['message']}".lstrip(": ")
    except (ValueError, LookupError, TypeError, AttributeError):
        return None


def retry_after_seconds(value: str | None, now: float) -> int:
    """Seconds to leave a rate-limited upstream alone: its Retry-After (seconds or an HTTP date), else
    RATE_LIMIT_PAUSE; at least 1, at most MAX_RATE_LIMIT_PAUSE."""
    wait: float = RATE_LIMIT_PAUSE
    if value:
        value = value.strip()
        if value.isdigit():
            wait = int(value)
        else:
            try:
                wait = email.utils.parsedate_to_datetime(value).timestamp() - now
            except (TypeError, ValueError, IndexError, OverflowError):
                wait = RATE_LIMIT_PAUSE
    return int(min(max(math.ceil(wait), 1), MAX_RATE_LIMIT_PAUSE))


def tag_page(body: bytes, key: str = "tags") -> list[str] | None:
    """The `tags` (or other `key`: `repositories` of a catalog) of a page (null counts as none); None when the
    document is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    tags = doc.get(key) or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return None
    return tags


def content_range(value: str) -> tuple[int, int, int | None] | None:
    """(first, last, total) of a `Content-Range: bytes first-last/total` answer (total None for `*`)."""
    unit, _, rest = value.strip().partition(" ")
    span, _, total = rest.partition("/")
    first, _, last = span.partition("-")
    if unit != "bytes" or not (first.isdigit() and last.isdigit()) or not (total.isdigit() or total == "*"):
        return None
    return int(first), int(last), int(total) if total.isdigit() else None


def descriptor_list(body: bytes, key: str) -> list[dict[str, Any]] | None:
    """The list of objects under `key` of a JSON document (an index's `manifests`); None when it is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    entries = doc.get(key) if isinstance(doc, dict) else None
    if entries is None and isinstance(doc, dict):
        return []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    return entries
