"""Grammar of the names a request carries: repository names, tags and upload session ids.

Each is checked whole (`fullmatch`: a `$` would let a trailing newline through) before it becomes part of a
storage path or an upstream URL.
"""

from __future__ import annotations

import re

# name = <component>(/<component>)*, component = [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Distribution routes upload ids by [a-zA-Z0-9-_.=]+ (it issues UUIDs, as k3sreg does); a leading '.' is refused
# so that '.' and '..' never name a directory, and one path component holds at most 255 bytes (NAME_MAX).
UPLOAD_ID_RE = re.compile(r"[a-zA-Z0-9_=-][a-zA-Z0-9._=-]{0,254}")
# The whole name is limited to 255 characters, so no component of it can pass NAME_MAX on disk either.
MAX_NAME_LENGTH = 255


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid repository name, or None when it is."""
    if not name:
        return "repository name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"repository name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    if not NAME_RE.fullmatch(name):
        if name != name.lower():
            return f"repository name {name!r} must be lower case"
        return (f"repository name {name!r} is invalid: path components of [a-z0-9] separated by "
                "'.', '_', '__' or '-', joined by single '/'")
    return None


def is_valid_tag(tag: str) -> bool:
    """Whether `tag` matches the spec's tag grammar."""
    return TAG_RE.fullmatch(tag) is not None


def is_valid_upload_id(value: str) -> bool:
    """Whether `value` can name an upload session (k3sreg's and Distribution's ids are UUIDs)."""
    return UPLOAD_ID_RE.fullmatch(value) is not None
