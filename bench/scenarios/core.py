"""Issue 2 §7: k3sreg vs docker-registry 2.8.2 vs nginx (sendfile) on the same content, in one run.

Order of work, so that every figure sees the same conditions:
1. Memory in blob size: on fresh servers, push and pull a small blob twice, read each process's VmHWM; push and
   pull the big blob the same way, read it again. The growth is what blob size costs in memory (target: flat).
2. Content for small requests: a manifest tagged `latest` that references the big blob, and one small manifest
   under N tags in another repository. nginx gets the same bytes as static files.
3. `runs` rounds; in each, every figure is measured on every server in turn (the order rotates per round), so
   drift in the machine's load spreads over all columns instead of landing on one. Around each operation the
   server's CPU time (its whole process tree) is read too: CPU per GB or per request barely moves with the
   machine's load, unlike MB/s and req/s, so those rows are the steadier comparison on a busy machine.
4. Peak memory of each process tree over the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable

from bench import content
from bench.content import BlobFile
from bench.context import Context
from bench.procs import MIB, StartError, cpu_seconds, peak_memory
from bench.report import Figure, Results, Target
from bench.scenarios import core_ops
from bench.scenarios.core_ops import Outcome
from bench.servers import DOCKER_REGISTRY, K3SREG, NGINX, Server, start_docker_registry, start_k3sreg, start_nginx

_VARIANTS = itertools.count(1)


def _declare(results: Results, ctx: Context) -> None:
    cfg = ctx.config
    big, small, c = f"{cfg.blob_mib} MiB", f"{cfg.small_blob_mib} MiB", cfg.connections
    push_target = Target("ratio_min", 1.5)
    pull_target = Target("ratio_min", 0.9, NGINX)
    rps_target = Target("ratio_min", 3.0)
    p99_target = Target("ratio_max", 1 / 3, text="≤1/3 docker-registry")
    plural = {n: f"{n} client{'s' if n > 1 else ''}" for n in cfg.pull_clients}
    rows = [
        Figure("push.monolithic", f"push {big}, monolithic", "MB/s", True, push_target),
        Figure("push.chunked", f"push {big}, {cfg.chunk_mib} MiB chunks", "MB/s", True, push_target),
        *(Figure(f"pull.{n}", f"pull {big}, {plural[n]}", "MB/s", True, pull_target) for n in cfg.pull_clients),
        Figure("manifest.rps", f"manifest GET by tag, c{c}", "req/s", True, rps_target),
        Figure("manifest.p50", "manifest GET p50", "ms", False),
        Figure("manifest.p99", "manifest GET p99", "ms", False, p99_target),
        Figure("head.rps", f"blob HEAD, c{c}", "req/s", True, rps_target),
        Figure("head.p50", "blob HEAD p50", "ms", False),
        Figure("head.p99", "blob HEAD p99", "ms", False, p99_target),
        Figure("tags.rps", f"tags/list of {cfg.tags} tags, c{c}", "req/s", True),
        Figure("tags.p99", "tags/list p99", "ms", False),
        Figure("rss.small", f"peak RSS per process after {small} push+pull", "MiB", False),
        Figure("rss.big", f"peak RSS per process after {big} push+pull", "MiB", False, Target("abs_max", 100)),
        Figure("rss.growth", f"RSS growth {small} → {big} blob", "MiB", False, Target("abs_max", 8, text="flat (≤8)")),
        Figure("rss.peak", "peak RSS per process, whole run", "MiB", False, Target("abs_max", 100)),
        Figure("rss.total", "peak RSS, all processes summed", "MiB", False),
        Figure("cpu.push.monolithic", "server CPU per GB pushed, monolithic", "CPU-s", False),
        Figure("cpu.push.chunked", "server CPU per GB pushed, chunked", "CPU-s", False),
        *(Figure(f"cpu.pull.{n}", f"server CPU per GB pulled, {plural[n]}", "CPU-s", False) for n in cfg.pull_clients),
        Figure("cpu.manifest", "server CPU per manifest GET", "µs", False),
        Figure("cpu.head", "server CPU per blob HEAD", "µs", False),
        Figure("cpu.tags", "server CPU per tags/list", "µs", False),
    ]
    for row in rows:
        results.declare(row)


async def _start(ctx: Context, results: Results, stack: contextlib.ExitStack) -> dict[str, Server]:
    cfg, servers = ctx.config, {}
    starters: list[tuple[str, Callable[[], Server]]] = [
        (DOCKER_REGISTRY, lambda: start_docker_registry(ctx.subdir("core", "docker-registry"))),
        (K3SREG, lambda: start_k3sreg(ctx.subdir("core", "k3sreg"), cfg.workers, env=dict(cfg.k3sreg_env))),
    ]
    for name, start in starters:
        if not ctx.wants(name):
            continue
        try:
            server = await asyncio.to_thread(start)
        except StartError as exc:
            results.notes.append(f"{name} did not start: {exc}")
            _fail_all(results, name, "did not start (see the notes)")
            continue
        stack.callback(server.stop)
        servers[name] = server
        ctx.log(f"{name} up at {server.url}")
    if ctx.wants(NGINX):
        # nginx serves the files of whichever registry is up: docker-registry's when there is a choice.
        source = servers.get(DOCKER_REGISTRY) or servers.get(K3SREG)
        if source is None:
            _fail_all(results, NGINX, "no registry to take blob files from")
        else:
            nginx = await asyncio.to_thread(start_nginx, ctx.subdir("core", "nginx"), source.data_dir, cfg.workers)
            stack.callback(nginx.stop)
            servers[NGINX] = nginx
            ctx.log(f"nginx up at {nginx.url}, serving {source.name}'s blob files")
    return servers


def _fail_all(results: Results, column: str, message: str) -> None:
    for fig in results.figures.values():
        fig.fail(column, message)


async def _measure(
    results: Results, server: Server, keys: tuple[str, ...], op: Awaitable[Outcome], cpu: tuple[str, float]
) -> None:
    """Run op; record its values, and the server's CPU time per unit of work as `cpu` = (key, scale)."""
    cpu_key, scale = cpu
    before = cpu_seconds(server.pid)
    try:
        outcome = await op
    except Exception as exc:
        for key in (*keys, cpu_key):
            results[key].fail(server.name, f"{type(exc).__name__}: {exc}")
        return
    spent = cpu_seconds(server.pid) - before
    for key, value in outcome.values.items():
        results[key].add(server.name, value)
    if outcome.work > 0:
        results[cpu_key].add(server.name, spent / outcome.work * scale)


async def _round(ctx: Context, results: Results, order: list[Server], big: BlobFile) -> None:
    cfg = ctx.config
    chunk = cfg.chunk_mib * MIB
    for _ in range(cfg.pushes_per_round):
        for server in (s for s in order if s.writable):
            # A new digest for every push: storing a new layer is the case that matters (and the costly one).
            for chunk_size, key in ((None, "push.monolithic"), (chunk, "push.chunked")):
                blob = big.variant(next(_VARIANTS))
                await _measure(results, server, (key,), core_ops.push(server, blob, chunk_size), (f"cpu.{key}", 1))
                core_ops.drop_blob_file(server, blob)
    # Pulls are short (a 256 MiB blob moves in a fraction of a second): take a few per round.
    for clients in cfg.pull_clients:
        for _ in range(cfg.pulls_per_round):
            for server in order:
                op = core_ops.pull(server, big, clients)
                await _measure(results, server, (f"pull.{clients}",), op, (f"cpu.pull.{clients}", 1))
    for server in order:
        manifest = core_ops.manifest_get(ctx, server)
        await _measure(
            results, server, ("manifest.rps", "manifest.p50", "manifest.p99"), manifest, ("cpu.manifest", 1e6)
        )
        head = core_ops.blob_head(ctx, server, big)
        await _measure(results, server, ("head.rps", "head.p50", "head.p99"), head, ("cpu.head", 1e6))
        await _measure(results, server, ("tags.rps", "tags.p99"), core_ops.tags_list(ctx, server), ("cpu.tags", 1e6))
        ctx.log(f"{server.name}: small-request loads done")


def _alive(ctx: Context, results: Results, server: Server) -> bool:
    """False (once noted, with the log's tail) when the server's root process has exited."""
    code = server.proc.exit_status()
    if code is None:
        return True
    message = f"{server.name} exited with code {code} during the run; its log ends with:\n{server.proc.log_tail(30)}"
    if message not in results.notes:
        results.notes.append(message)
        ctx.log(message)
    for key in ("rss.peak", "rss.total"):
        results[key].fail(server.name, f"exited with code {code}")
    return False


def _load_average() -> str:
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
    return "?"


async def run(ctx: Context, results: Results) -> None:
    """Measure every issue 2 §7 figure on every selected server; servers and files are gone on return."""
    cfg = ctx.config
    _declare(results, ctx)
    load_before = _load_average()
    blobs_dir = ctx.subdir("core", "blobs")
    ctx.log(f"writing {cfg.small_blob_mib} MiB and {cfg.blob_mib} MiB blobs")
    small = await asyncio.to_thread(content.write_blob, blobs_dir / "small", cfg.small_blob_mib, 1)
    big = await asyncio.to_thread(content.write_blob, blobs_dir / "big", cfg.blob_mib, 2)
    if cfg.k3sreg_env:
        results.notes.append("k3sreg ran with " + " ".join(f"{k}={v}" for k, v in cfg.k3sreg_env))
    with contextlib.ExitStack() as stack:
        servers = await _start(ctx, results, stack)
        if not servers:
            return
        await core_ops.memory_in_blob_size(ctx, results, servers, small, big)
        await core_ops.store_manifests(ctx, results, servers, big)
        order = list(servers.values())
        for round_no in range(cfg.runs):
            ctx.log(f"round {round_no + 1}/{cfg.runs}")
            await _round(ctx, results, order, big)
            order = [s for s in order[1:] + order[:1] if _alive(ctx, results, s)]
        for server in servers.values():
            if not _alive(ctx, results, server):
                continue
            memory = peak_memory(server.pid)
            results["rss.peak"].add(server.name, memory.per_process_max)
            results["rss.total"].add(server.name, memory.total)
            results.notes.append(f"{server.name}: {memory.processes} process(es) at the end of the run")
    results.notes.append(
        f"load average (1/5/15 min) before the run {load_before}, after {_load_average()}: "
        "anything above 0 is other work on this machine competing with the servers and the client"
    )
