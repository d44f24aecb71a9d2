"""How much the blobs of a store take: one walk of `blobs/`, cheap enough to repeat every few minutes.

A blob k3sreg committed has its size in the name of its `size-<n>` record, so counting it costs no stat; only
blobs written by Distribution (no record) are stat'ed. 100,000 blobs take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from k3sreg.storage import paths
from k3sreg.storage.driver import Driver


@dataclass(frozen=True, slots=True)
class Usage:
    """Blobs in the store and their bytes."""

    blobs: int
    bytes: int


def blob_usage(driver: Driver) -> Usage:
    """Count the blobs under `blobs/` and add up their sizes (synchronous: run it in a store thread)."""
    recorded: dict[str, int] = {}
    data: list[str] = []
    for path in driver.walk(paths.BLOBS):
        directory, _, name = path.rpartition("/")
        if name == "data":
            data.append(directory)
        elif name.startswith(paths.SIZE_MARKER):
            try:
                recorded[directory] = int(name[len(paths.SIZE_MARKER):])
            except ValueError:
                continue
    total = 0
    for directory in data:
        size = recorded.get(directory)
        if size is None:
            info = driver.stat(f"{directory}/data")
            size = info.size if info is not None else 0
        total += size
    return Usage(len(data), total)
