"""The list of repositories: every directory under `repositories/` that holds Distribution's `_manifests`.

A directory with only `_layers` or `_uploads` (an interrupted first push, a failed mount) is not a repository
yet, as in Distribution; housekeeping that must reach those passes `markers=ALL_MARKERS`.
"""

from __future__ import annotations

from k3sreg.storage import paths
from k3sreg.storage.driver import Driver

CATALOG_MARKERS = (paths.MANIFESTS,)
ALL_MARKERS = (paths.MANIFESTS, paths.LAYERS, paths.UPLOADS)


def repositories(driver: Driver, markers: tuple[str, ...] = CATALOG_MARKERS) -> list[str]:
    """All repository names (directories holding one of `markers`), sorted as the catalog API requires."""
    found: list[str] = []
    stack = [""]
    while stack:
        prefix = stack.pop()
        base = paths.repo(prefix) if prefix else paths.REPOSITORIES
        children = driver.list(base)
        if prefix and any(marker in children for marker in markers):
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
