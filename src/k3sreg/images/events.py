"""Progress of `k3sreg images` commands: the events the work reports, for the CLI to draw or print.

    plan       {images, blobs, bytes}                     what will be looked at
    image      {ref, digest, status: present|copying}
    blob       {digest, repo, size, status: copied|present|mounted|resumed}
    manifest   {ref, digest}                               a manifest stored (by digest)
    tag        {ref, digest}                               a tag set, the last step of an image
    verify     {digest, size}                              a bundle member checked (import)
    warning    {message}
    done       {images, copied, present, mounted, bytes, seconds}

Byte counts of blobs in flight go to `Reporter.transferred` (many per second), so a terminal can draw bars and a
CI log can get a throttled summary.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """Receives the events of one command."""

    def event(self, kind: str, **fields: Any) -> None:
        """One event (see the module docstring)."""
        ...

    def started(self, key: str, label: str, size: int) -> None:
        """A blob transfer `key` of `size` bytes begins."""
        ...

    def transferred(self, key: str, nbytes: int) -> None:
        """`nbytes` more of transfer `key` arrived."""
        ...

    def finished(self, key: str) -> None:
        """Transfer `key` is over (done or failed)."""
        ...


class Quiet:
    """A reporter that drops everything (library use, tests)."""

    def event(self, kind: str, **fields: Any) -> None:
        del kind, fields

    def started(self, key: str, label: str, size: int) -> None:
        del key, label, size

    def transferred(self, key: str, nbytes: int) -> None:
        del key, nbytes

    def finished(self, key: str) -> None:
        del key
