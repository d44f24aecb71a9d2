"""Reading what upstream registries answer: repository names, error documents, tag pages, Retry-After.

Pure functions, kept apart from the HTTP client (`client`) so they are tested without a network.
"""

from __future__ import annotations

import email.utils
import json
import math
from typing import Any

RATE_LIMIT_PAUSE = 10  # seconds without asking after a 429 that names no Retry-After
MAX_RATE_LIMIT_PAUSE = 3600


def upstream_repository(registry: str, repository: str) -> str:
    """The upstream's name for `repository`: Docker Hub keeps one-component names under `library/`."""
    if registry == "docker.io" and "/" not in repository:
        return f"library/{repository}"
    return repository


def reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return text or type(exc).__name__


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


def tag_page(body: bytes) -> list[str] | None:
    """The `tags` of a tags/list answer (null counts as none); None when the document is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    tags = doc.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return None
    return tags


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based): 0.1, 0.2, 0.4 ... capped at 2."""
    return min(2.0, 0.1 * 2.0 ** (attempt - 1))


def content_range(value: str) -> tuple[int, int, int | None] | None:
    """(first, last, total) of a `Content-Range: bytes first-last/total` answer (total None for `*`)."""
    unit, _, rest = value.strip().partition(" ")
    span, _, total = rest.partition("/")
    first, _, last = span.partition("-")
    if unit != "bytes" or not (first.isdigit() and last.isdigit()) or not (total.isdigit() or total == "*"):
        return None
    return int(first), int(last), int(total) if total.isdigit() else None
