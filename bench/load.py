"""Small-request load: wrk for GETs, ApacheBench (`ab`) for HEADs.

`wrk -t2 -c32 -d10s --latency` is the issue's load; a Lua script sets the method and Accept header and its
`done` hook prints a JSON summary (requests, duration, latency percentiles in microseconds, errors).
wrk 4.1 cannot measure HEAD: its parser waits for the body that the (correct) `Content-Length` of a HEAD answer
announces, and no request ever completes. `ab -i -k -c32` does HEAD right; its `-e` CSV gives the percentiles.
Any non-2xx answer or socket error fails the figure, because an error page served fast is not a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_LUA = """\
wrk.method = "{method}"
wrk.headers["Accept"] = "{accept}"
{headers}done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK-JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"bytes\\": %d, \\"p50_us\\": %d, " ..
    "\\"p90_us\\": %d, \\"p99_us\\": %d, \\"max_us\\": %d, \\"connect\\": %d, \\"read\\": %d, " ..
    "\\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d}}\\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class LoadError(RuntimeError):
    """The load generator failed, or the server answered errors under load."""


@dataclass(frozen=True)
class LoadResult:
    """One load run: throughput and latency percentiles."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Requests per second over the run."""
        return self.requests / self.seconds


async def run_wrk(
    url: str,
    script_dir: Path,
    *,
    method: str = "GET",
    accept: str = "*/*",
    threads: int = 2,
    connections: int = 32,
    seconds: float = 10.0,
    timeout_s: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Load url with wrk and return its summary; raises LoadError on any error or non-2xx answer. `headers`
    go into the Lua script (so a credential never shows among wrk's arguments)."""
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    script = script_dir / f"wrk-{method.lower()}-{zlib.crc32((accept + extra).encode()):08x}.lua"
    script.write_text(_LUA.format(method=method, accept=accept, headers=extra))
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = await _communicate(proc)
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK-JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise LoadError(f"wrk {method} {url} failed (exit {proc.returncode}):\n{text[-1500:]}")
    data = json.loads(line.removeprefix("WRK-JSON "))
    failures = {k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    if failures or data["requests"] == 0:
        raise LoadError(f"wrk {method} {url}: {data['requests']} requests, errors {failures}")
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


async def run_ab_head(
    url: str, work_dir: Path, *, connections: int = 32, seconds: float = 10.0, timeout_s: float = 10.0
) -> LoadResult:
    """HEAD url with `ab -i -k` for `seconds`; raises LoadError on any failed or non-2xx request."""
    csv = work_dir / "ab-percentiles.csv"
    argv = [
        "ab",
        "-q",
        "-i",
        "-k",
        "-c",
        str(connections),
        "-t",
        str(max(1, round(seconds))),
        "-n",
        "100000000",
        "-s",
        str(max(1, round(timeout_s))),
        "-e",
        str(csv),
        url,
    ]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = await _communicate(proc)
    text = out.decode(errors="replace")
    fields = _ab_fields(text)
    if proc.returncode != 0 or "Complete requests" not in fields or "Time taken for tests" not in fields:
        raise LoadError(f"ab HEAD {url} failed (exit {proc.returncode}):\n{text[-1500:]}")
    complete = int(fields["Complete requests"])
    failed = int(fields.get("Failed requests", "0"))
    non2xx = int(fields.get("Non-2xx responses", "0"))
    if failed or non2xx or complete == 0:
        raise LoadError(f"ab HEAD {url}: {complete} requests, {failed} failed, {non2xx} non-2xx")
    percentiles = _ab_percentiles(csv)
    return LoadResult(
        requests=complete,
        seconds=float(fields["Time taken for tests"].split()[0]),
        p50_ms=percentiles[50],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        max_ms=percentiles[100],
    )


def _ab_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields[key.strip()] = value.strip()
    return fields


def _ab_percentiles(csv: Path) -> dict[int, float]:
    rows = csv.read_text().splitlines()[1:]
    return {int(p): float(ms) for p, _, ms in (row.partition(",") for row in rows if row)}


async def _communicate(proc: asyncio.subprocess.Process) -> bytes:
    """The tool's output; a cancelled run (SIGTERM, Ctrl-C) kills the tool instead of leaving it loading."""
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return out
