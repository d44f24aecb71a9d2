"""How `k3sreg images` commands show progress: JSON lines for CI, rich bars on a terminal, plain lines otherwise.

`--json` prints one JSON object per line on stdout as events happen (`{"event": "blob", ...}`), with a
`progress` line at most once a second while bytes move; a terminal gets a total bar and one bar per blob in
flight on stderr; a pipe gets one line per image tagged and the summary.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer

from k3sreg.images.events import Quiet


class JsonLines:
    """Events as JSON lines on stdout, for CI logs and scripts."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self._last = 0.0

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "plan":
            self.total = int(fields.get("bytes", 0))
        typer.echo(json.dumps({"event": kind, **fields}, sort_keys=True, default=str))

    def started(self, key: str, label: str, size: int) -> None:
        del key, label, size

    def transferred(self, key: str, nbytes: int) -> None:
        del key
        self.done += nbytes
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            typer.echo(json.dumps({"event": "progress", "bytes": self.done, "total": self.total}))

    def finished(self, key: str) -> None:
        del key


class Plain(Quiet):
    """One line per image and per tag on stdout, warnings and errors on stderr (a pipe, a log); no per-blob
    progress (it inherits `Quiet`'s transfer hooks)."""

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "tag":
            typer.echo(f"tagged {fields['ref']} {fields['digest']}")
        elif kind == "image" and fields.get("status") == "present":
            typer.echo(f"present {fields['ref']}")
        elif kind in ("warning", "error"):
            typer.echo(f"{kind}: {fields['message']}", err=True)
        elif kind == "written":
            typer.echo(f"wrote {fields['path']} ({fields.get('bytes', 0)} bytes)")


class Bars(Plain):
    """A total bar and a bar per blob in flight, on stderr; the lines of `Plain` above them."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=self.console,
                                 transient=True)
        self.total: TaskID = self.progress.add_task("total", total=None)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "plan":
            self.progress.update(self.total, total=fields.get("bytes") or None)
        elif kind in ("tag", "warning", "error", "written") or (kind == "image" and fields.get("status") ==
                                                                 "present"):
            self.progress.console.print(_line(kind, fields), highlight=False, markup=False)

    def started(self, key: str, label: str, size: int) -> None:
        self.tasks[key] = self.progress.add_task(label, total=size)

    def transferred(self, key: str, nbytes: int) -> None:
        task = self.tasks.get(key)
        if task is not None:
            self.progress.advance(task, nbytes)
        self.progress.advance(self.total, nbytes)

    def finished(self, key: str) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            self.progress.remove_task(task)


def _line(kind: str, fields: dict[str, Any]) -> str:
    if kind == "tag":
        return f"tagged {fields['ref']} {fields['digest']}"
    if kind == "image":
        return f"present {fields['ref']}"
    if kind == "written":
        return f"wrote {fields['path']} ({fields.get('bytes', 0)} bytes)"
    return f"{kind}: {fields['message']}"


def reporter(as_json: bool) -> JsonLines | Plain | Bars:
    """The reporter for this run: JSON lines, bars on a terminal, or plain lines."""
    if as_json:
        return JsonLines()
    if sys.stderr.isatty():
        return Bars()
    return Plain()


def summary_line(summary: dict[str, Any]) -> str:
    """`done: 3 images (1 present), 12 blobs copied, 2 mounted, 40 present, 120.3 MB in 4.2 s`."""
    counts = ", ".join(f"{summary[k]} {k}" for k in ("copied", "resumed", "mounted", "present") if summary.get(k))
    mb = summary.get("bytes", 0) / 1e6
    return (f"done: {summary.get('images', 0)} images ({summary.get('present_images', 0)} already there), "
            f"blobs: {counts or 'none'}, {mb:.1f} MB in {summary.get('seconds', 0):.1f} s")
