"""Issue 2 §7: k3sreg vs docker-registry 2.8.2 vs nginx (sendfile) on the same content, in one run.

Order of work, so that every figure sees the same conditions:
1. Memory in blob size: on fresh servers, push and pull a small blob twice (this also warms every code path in
   every worker), read each process's VmHWM; push and pull the big blob the same way, read it again. The growth
   between the two readings is what blob size costs in memory (target: flat).
2. Content for small requests: a manifest tagged `latest` that references the big blob, and one small manifest
   under N tags in another repository. nginx gets the same bytes as static files.
3. `runs` rounds; in each, every figure is measured on every server in turn (the order rotates per round), so
   drift in the machine's load spreads over all columns instead of landing on one.
4. Peak memory of each process tree over the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import aiohttp

from bench import client, content
from bench.content import MANIFEST_ACCEPT, BlobFile
from bench.context import Context
from bench.load import LoadResult, run_ab_head, run_wrk
from bench.procs import MIB, StartError, peak_memory
from bench.report import Figure, Results, Target
from bench.servers import DOCKER_REGISTRY, K3SREG, NGINX, Server, start_docker_registry, start_k3sreg, start_nginx

APP = "bench/app"
TAGS = "bench/tags"


def _declare(results: Results, ctx: Context) -> None:
    cfg = ctx.config
    big, small = f"{cfg.blob_mib} MiB", f"{cfg.small_blob_mib} MiB"
    push_target = Target("ratio_min", 1.5)
    pull_target = Target("ratio_min", 0.9, NGINX)
    rps_target = Target("ratio_min", 3.0)
    p99_target = Target("ratio_max", 1 / 3, text="≤1/3 docker-registry")
    rows = [
        Figure("push.monolithic", f"push {big}, monolithic", "MB/s", True, push_target),
        Figure("push.chunked", f"push {big}, {cfg.chunk_mib} MiB chunks", "MB/s", True, push_target),
        *(
            Figure(f"pull.{n}", f"pull {big}, {n} client{'s' if n > 1 else ''}", "MB/s", True, pull_target)
            for n in cfg.pull_clients
        ),
        Figure("manifest.rps", f"manifest GET by tag, c{cfg.connections}", "req/s", True, rps_target),
        Figure("manifest.p50", "manifest GET p50", "ms", False),
        Figure("manifest.p99", "manifest GET p99", "ms", False, p99_target),
        Figure("head.rps", f"blob HEAD, c{cfg.connections}", "req/s", True, rps_target),
        Figure("head.p50", "blob HEAD p50", "ms", False),
        Figure("head.p99", "blob HEAD p99", "ms", False, p99_target),
        Figure("tags.rps", f"tags/list of {cfg.tags} tags, c{cfg.connections}", "req/s", True),
        Figure("tags.p99", "tags/list p99", "ms", False),
        Figure("rss.small", f"peak RSS per process after {small} push+pull", "MiB", False),
        Figure("rss.big", f"peak RSS per process after {big} push+pull", "MiB", False, Target("abs_max", 100)),
        Figure("rss.growth", f"RSS growth {small} → {big} blob", "MiB", False, Target("abs_max", 8, text="flat (≤8)")),
        Figure("rss.peak", "peak RSS per process, whole run", "MiB", False, Target("abs_max", 100)),
        Figure("rss.total", "peak RSS, all processes summed", "MiB", False),
    ]
    for row in rows:
        results.declare(row)


async def _start(ctx: Context, results: Results, stack: contextlib.ExitStack) -> dict[str, Server]:
    cfg, servers = ctx.config, {}
    starters: list[tuple[str, Callable[[], Server]]] = [
        (DOCKER_REGISTRY, lambda: start_docker_registry(ctx.subdir("core", "docker-registry"))),
        (K3SREG, lambda: start_k3sreg(ctx.subdir("core", "k3sreg"), cfg.workers)),
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


async def _push(server: Server, blob: BlobFile, chunk: int | None) -> float:
    # A new connection per push, as a client pushing a layer opens one; with --workers, it lands on any worker.
    async with aiohttp.ClientSession() as session:
        if chunk is None:
            return await client.push_monolithic(session, server.url, APP, blob)
        return await client.push_chunked(session, server.url, APP, blob, chunk)


async def _pull(server: Server, blob: BlobFile, clients: int) -> client.PullResult:
    url = f"{server.url}/v2/{APP}/blobs/{blob.digest}"
    return await asyncio.to_thread(client.pull, url, blob.size, clients)


async def _exercise(server: Server, blob: BlobFile, chunk: int, times: int) -> None:
    for _ in range(times):
        if server.writable:
            await _push(server, blob, None)
            await _push(server, blob, chunk)
        await _pull(server, blob, 1)
        await _pull(server, blob, 8)


async def _memory_phase(
    ctx: Context, results: Results, servers: dict[str, Server], small: BlobFile, big: BlobFile
) -> None:
    chunk = ctx.config.chunk_mib * MIB
    # Writers first: nginx serves the files they just stored.
    for server in sorted(servers.values(), key=lambda s: not s.writable):
        try:
            await _exercise(server, small, chunk, times=2)
            before = peak_memory(server.pid).per_process_max
            await _exercise(server, big, chunk, times=1)
            after = peak_memory(server.pid).per_process_max
        except Exception as exc:
            for key in ("rss.small", "rss.big", "rss.growth"):
                results[key].fail(server.name, f"{type(exc).__name__}: {exc}")
            continue
        results["rss.small"].add(server.name, before)
        results["rss.big"].add(server.name, after)
        results["rss.growth"].add(server.name, after - before)
        ctx.log(f"{server.name}: peak RSS per process {before:.1f} MiB → {after:.1f} MiB")


async def _populate(ctx: Context, results: Results, servers: dict[str, Server], big: BlobFile) -> None:
    config = content.config_blob("app")
    manifest = content.manifest_for(config, [content.layer_descriptor(big)])
    tag_config = content.config_blob("tags")
    tag_layer = content.SmallBlob(b"k3sreg bench layer\n", content.OCI_LAYER)
    tag_manifest = content.manifest_for(tag_config, [content.layer_descriptor(tag_layer)])
    tags = [f"v{i:04d}" for i in range(ctx.config.tags)]
    for server in servers.values():
        if server.static_dir is not None:
            _write_static(server, manifest, tags)
            continue
        try:
            async with aiohttp.ClientSession() as session:
                await client.push_small(session, server.url, APP, config)
                await client.put_manifest(session, server.url, APP, "latest", manifest)
                for blob in (tag_config, tag_layer):
                    await client.push_small(session, server.url, TAGS, blob)
                await client.put_tags(session, server.url, TAGS, tag_manifest, tags)
                listed = await client.get_json(session, f"{server.url}/v2/{TAGS}/tags/list")
        except Exception as exc:
            for key in ("manifest.rps", "manifest.p50", "manifest.p99", "tags.rps", "tags.p99"):
                results[key].fail(server.name, f"storing the manifests failed: {type(exc).__name__}: {exc}")
            continue
        count = len(listed.get("tags") or []) if isinstance(listed, dict) else 0
        if count != len(tags):
            results.notes.append(f"{server.name}: tags/list without `n` returned {count} of {len(tags)} tags")
        ctx.log(f"{server.name}: manifest and {len(tags)} tags stored; tags/list returns {count}")


def _write_static(server: Server, manifest: content.SmallBlob, tags: list[str]) -> None:
    assert server.static_dir is not None
    path = server.static_dir / "manifests" / APP / "latest"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(manifest.data)
    listing = server.static_dir / "tags" / TAGS / "list"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(json.dumps({"name": TAGS, "tags": sorted(tags)}))


async def _measure(fig_keys: tuple[str, ...], server: Server, results: Results, op: Awaitable[list[float]]) -> None:
    try:
        values = await op
    except Exception as exc:
        for key in fig_keys:
            results[key].fail(server.name, f"{type(exc).__name__}: {exc}")
        return
    for key, value in zip(fig_keys, values, strict=True):
        results[key].add(server.name, value)


def _load_values(result: LoadResult) -> list[float]:
    return [result.rps, result.p50_ms, result.p99_ms]


async def _round(ctx: Context, results: Results, order: list[Server], big: BlobFile) -> None:
    cfg = ctx.config
    chunk = cfg.chunk_mib * MIB
    for server in order:
        if server.writable:
            await _measure(("push.monolithic",), server, results, _mbps(_push(server, big, None), big))
            await _measure(("push.chunked",), server, results, _mbps(_push(server, big, chunk), big))
    # Pulls are short (a 256 MiB blob moves in a fraction of a second): take a few per round.
    for clients in cfg.pull_clients:
        for _ in range(cfg.pulls_per_round):
            for server in order:
                await _measure((f"pull.{clients}",), server, results, _pull_mbps(server, big, clients))
    for server in order:
        manifest_url = f"{server.url}/v2/{APP}/manifests/latest"
        blob_url = f"{server.url}/v2/{APP}/blobs/{big.digest}"
        tags_url = f"{server.url}/v2/{TAGS}/tags/list"
        work = ctx.workdir
        await _measure(
            ("manifest.rps", "manifest.p50", "manifest.p99"),
            server,
            results,
            _values(
                run_wrk(
                    manifest_url,
                    work,
                    accept=MANIFEST_ACCEPT,
                    threads=cfg.wrk_threads,
                    seconds=cfg.load_seconds,
                    connections=cfg.connections,
                )
            ),
        )
        await _measure(
            ("head.rps", "head.p50", "head.p99"),
            server,
            results,
            _values(run_ab_head(blob_url, work, seconds=cfg.load_seconds, connections=cfg.connections)),
        )
        await _measure(
            ("tags.rps", "tags.p99"),
            server,
            results,
            _values(
                run_wrk(
                    tags_url,
                    work,
                    accept="application/json",
                    threads=cfg.wrk_threads,
                    seconds=cfg.load_seconds,
                    connections=cfg.connections,
                ),
                2,
            ),
        )
        ctx.log(f"{server.name}: small-request loads done")


async def _mbps(push: Awaitable[float], blob: BlobFile) -> list[float]:
    return [blob.size / await push / 1e6]


async def _pull_mbps(server: Server, blob: BlobFile, clients: int) -> list[float]:
    return [(await _pull(server, blob, clients)).mb_per_s]


async def _values(run: Awaitable[LoadResult], keep: int = 3) -> list[float]:
    values = _load_values(await run)
    return values if keep == 3 else [values[0], values[2]]


def _alive(ctx: Context, results: Results, server: Server) -> bool:
    """False (once noted, with the log's tail) when the server's root process has exited."""
    code = server.proc.popen.poll()
    if code is None:
        return True
    message = f"{server.name} exited with code {code} during the run; its log ends with:\n{server.proc.log_tail(30)}"
    if message not in results.notes:
        results.notes.append(message)
        ctx.log(message)
    for key in ("rss.peak", "rss.total"):
        results[key].fail(server.name, f"exited with code {code}")
    return False


async def run(ctx: Context, results: Results) -> None:
    """Measure every issue 2 §7 figure on every selected server; servers and files are gone on return."""
    cfg = ctx.config
    _declare(results, ctx)
    blobs_dir = ctx.subdir("core", "blobs")
    ctx.log(f"writing {cfg.small_blob_mib} MiB and {cfg.blob_mib} MiB blobs")
    small = await asyncio.to_thread(content.write_blob, blobs_dir / "small", cfg.small_blob_mib, 1)
    big = await asyncio.to_thread(content.write_blob, blobs_dir / "big", cfg.blob_mib, 2)
    with contextlib.ExitStack() as stack:
        servers = await _start(ctx, results, stack)
        if not servers:
            return
        await _memory_phase(ctx, results, servers, small, big)
        await _populate(ctx, results, servers, big)
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
