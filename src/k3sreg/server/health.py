"""Health checks as Distribution runs them: while any check fails past its threshold, every request is 503.

Checks: `storagedriver` (the store answers a listing), `file` (unhealthy while the file exists), `http` (the
URI answers the expected status), `tcp` (the address accepts a connection). `GET /debug/health` shows the state
as JSON.

With `storagedriver` on, k3sreg also writes and removes a probe object (`storagewrite`), so that a full or
read-only store makes the pod unready. That check decides `/debug/health` (readiness) only: a store that can
no longer take writes still serves every pull, as it should. In read-only mode nothing is written, so there is
no write probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from k3sreg import errors
from k3sreg.config.health import HealthSettings
from k3sreg.storage.store import Store

log = logging.getLogger("k3sreg.health")
Probe = Callable[[], Awaitable[str | None]]  # None when healthy, else the reason
Check = tuple[str, Probe, float, int, bool]  # name, probe, interval seconds, threshold, gates every request


class Health:
    """Failure counts per check. `problems` lists the failing checks that turn every request into 503;
    `unready` the failing ones that only make `/debug/health` answer 503."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}
        self.unready: dict[str, str] = {}
        self._failures: dict[str, int] = {}

    def record(self, name: str, reason: str | None, threshold: int, gates: bool = True) -> None:
        failing = self.problems if gates else self.unready
        if reason is None:
            self._failures[name] = 0
            if failing.pop(name, None) is not None:
                log.info("health check %s recovered", name)
            return
        self._failures[name] = self._failures.get(name, 0) + 1
        if self._failures[name] > threshold and name not in failing:
            log.error("health check %s failing: %s", name, reason)
            failing[name] = reason


def probes(settings: HealthSettings, store: Store, writable: bool = True) -> list[Check]:
    """Every configured check; `writable`: the storage is also probed with a write (False in read-only mode,
    whose store may be read-only on purpose)."""
    out: list[Check] = []
    sd = settings.storagedriver
    if sd.enabled:
        async def storage() -> str | None:
            try:
                await store.catalog_root()
            except (OSError, errors.RegistryError) as e:
                return f"storage driver: {e}"
            return None

        async def storage_write() -> str | None:
            try:
                await store.probe_write()
            except (OSError, errors.RegistryError) as e:
                return f"storage driver cannot write: {e}"
            return None
        out.append(("storagedriver", storage, sd.interval, sd.threshold, True))
        if writable:
            out.append(("storagewrite", storage_write, sd.interval, sd.threshold, False))
    for fc in settings.file:
        async def file_check(path: str = fc.file) -> str | None:
            return f"file {path} exists" if Path(path).exists() else None
        out.append((f"file:{fc.file}", file_check, fc.interval, fc.threshold, True))
    for hc in settings.http:
        async def http_check(uri: str = hc.uri, expected: int = hc.statuscode, timeout: float = hc.timeout
                             ) -> str | None:
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
                        s.head(uri) as r:
                    return None if r.status == expected else f"{uri} answered {r.status}, expected {expected}"
            except (aiohttp.ClientError, TimeoutError) as e:
                return f"{uri}: {e or type(e).__name__}"
        out.append((f"http:{hc.uri}", http_check, hc.interval, hc.threshold, True))
    for tc in settings.tcp:
        async def tcp_check(addr: str = tc.addr, timeout: float = tc.timeout) -> str | None:
            host, _, port = addr.rpartition(":")
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port))
                writer.close()
            except (OSError, TimeoutError, ValueError) as e:
                return f"tcp {addr}: {e or type(e).__name__}"
            return None
        out.append((f"tcp:{tc.addr}", tcp_check, tc.interval, tc.threshold, True))
    return out


def install(app: web.Application, settings: HealthSettings, store: Store, health: Health,
            writable: bool = True) -> None:
    """Run the configured checks in the background, filling `health`, and add `/debug/health`."""
    checks = probes(settings, store, writable)

    async def run_checks(app: web.Application) -> AsyncIterator[None]:
        async def loop(name: str, probe: Probe, interval: float, threshold: int, gates: bool) -> None:
            while True:
                health.record(name, await probe(), threshold, gates)
                await asyncio.sleep(interval)

        tasks = [asyncio.create_task(loop(*c)) for c in checks]
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def show(request: web.Request) -> web.StreamResponse:
        failing = {**health.problems, **health.unready}
        return web.json_response(failing, status=503 if failing else 200)

    if checks:
        app.cleanup_ctx.append(run_checks)
    app.router.add_get("/debug/health", show)
