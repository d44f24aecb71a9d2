"""The list of repositories: every directory under `repositories/` that holds Distribution's `_` folders."""

from __future__ import annotations

from k3sreg.storage import paths
from k3sreg.storage.driver import Driver

_MARKERS = ("_manifests", "_layers", "_uploads")


def repositories(driver: Driver) -> list[str]:
    """All repository names, sorted as the catalog API requires."""
    found: list[str] = []
    stack = [""]
    while stack:
        prefix = stack.pop()
        base = f"{paths.REPOSITORIES}/{prefix}" if prefix else paths.REPOSITORIES
        children = driver.list(base)
        if prefix and any(marker in children for marker in _MARKERS):
            found.append(prefix)
        for child in children:
            if not child.startswith("_") and not child.startswith("."):
                stack.append(f"{prefix}/{child}" if prefix else child)
    return sorted(found)


def page(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """The items after `last`, at most `n` of them; the flag says whether more follow."""
    if last:
        items = [i for i in items if i > last]
    if n is None:
        return items, False
    return items[:n], len(items) > n
