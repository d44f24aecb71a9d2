"""Repository-name and tag grammar of the OCI Distribution Spec."""

from __future__ import annotations

import re

# name = <component>(/<component>)*, component = [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid repository name, or None when it is."""
    if not name:
        return "repository name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"repository name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    if not NAME_RE.match(name):
        if name != name.lower():
            return f"repository name {name!r} must be lower case"
        return (f"repository name {name!r} is invalid: path components of [a-z0-9] separated by "
                "'.', '_', '__' or '-', joined by single '/'")
    return None


def is_valid_tag(tag: str) -> bool:
    """Whether `tag` matches the spec's tag grammar."""
    return bool(TAG_RE.match(tag))
