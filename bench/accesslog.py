"""Counting what a server was asked, from docker-registry's access log (for issue 3's upstream-fetch counts).

Start the upstream with `start_docker_registry(dir, ACCESS_LOG_ON)`: it then writes one combined-format line
per request to its output (`Server.log`), e.g.
`127.0.0.1 - - [29/Nov/2026:13:07:57 +0000] "GET /v2/x/blobs/sha256:… HTTP/1.1" 200 1048576 "" ""`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ACCESS_LOG_ON: Mapping[str, object] = {"log": {"level": "info", "accesslog": {"disabled": False}}}

_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<size>\d+|-)')


@dataclass(frozen=True)
class Access:
    """One request as the access log recorded it."""

    method: str
    path: str
    status: int
    size: int


def accesses(log: Path) -> list[Access]:
    """Every request in the log, in order (lines of other kinds are skipped)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        m = _LINE.search(line)
        if m:
            size = 0 if m["size"] == "-" else int(m["size"])
            found.append(Access(m["method"], m["path"], int(m["status"]), size))
    return found


def count(log: Path, method: str, path_contains: str, status: int | None = None) -> int:
    """How many `method` requests for a path containing `path_contains` (and with `status`, if given)."""
    return sum(
        1
        for a in accesses(log)
        if a.method == method and path_contains in a.path and (status is None or a.status == status)
    )
