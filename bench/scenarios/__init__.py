"""Scenarios: each adds its rows to the one report of a `make bench` run.

A scenario is `async def run(ctx: Context, results: Results) -> None`: it declares its figures
(`results.declare(Figure(...))`), starts the servers it needs under `ctx.subdir(...)`, fills samples per server
column, and stops everything it started before it returns. A scenario may also measure k3sreg's code without a
server (`evict`: the eviction of a large cache, in the k3sreg column).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.context import Context
from bench.report import Results
from bench.scenarios import airgap, auth, core, evict, gc, proxy, startup

Scenario = Callable[[Context, Results], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    "core": core.run,
    "proxy": proxy.run,
    "startup": startup.run,
    "airgap": airgap.run,
    "evict": evict.run,
    "auth": auth.run,
    "gc": gc.run,
}
