"""Scenarios: each adds its rows to the one report of a `make bench` run.

A scenario is `async def run(ctx: Context, results: Results) -> None`: it declares its figures
(`results.declare(Figure(...))`), starts the servers it needs under `ctx.subdir(...)`, fills samples per server
column, and stops everything it started before it returns. Issue 3's proxy benchmark (cold pulls through a
pull-through cache, upstream fetches counted from the upstream's access log) is meant to be one more module here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.context import Context
from bench.report import Results
from bench.scenarios import auth, core, proxy, startup

Scenario = Callable[[Context, Results], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    "core": core.run,
    "proxy": proxy.run,
    "startup": startup.run,
    "auth": auth.run,
}
