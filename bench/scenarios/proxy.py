"""Issue 3: the pull-through cache under a cold herd, k3sreg vs docker-registry 2.8.2 in proxy mode.

One docker-registry is the upstream (access log on, so its GETs can be counted), holding a 64 MiB blob under
`library/big`. For each N in (8, 32), each round starts a FRESH cache of each kind (so every pull is cold) and
lets N clients GET the blob at once: the figures are the upstream GETs of that blob (from the upstream's
access log) and the time until every client has the whole blob. Then one client alone: a cold pull (fresh
cache), a warm pull (same cache, again), and a pull of a blob pushed locally to k3sreg (the local baseline).
"""

from __future__ import annotations

import asyncio
import re

import aiohttp

from bench import client, content
from bench.content import BlobFile
from bench.context import Context
from bench.procs import StartError
from bench.report import Figure, Results, Target
from bench.servers import DOCKER_REGISTRY, K3SREG, Server, start_docker_registry, start_k3sreg

BLOB_MIB = 64
HERDS = (8, 32)
REPO = "library/big"


def _declare(results: Results, blob_mib: int) -> None:
    one = Target("abs_eq", 1, text="1")
    no_worse = Target("ratio_max", 1.0, text="≤1x docker-registry")
    for n in HERDS:
        results.declare(Figure(f"proxy.fetches.{n}", f"upstream GETs, {n} cold clients", "count", False, one))
        results.declare(Figure(f"proxy.done.{n}", f"all {n} done, {blob_mib} MiB cold", "s", False, no_worse))
    results.declare(Figure("proxy.cold1", f"cold pull {blob_mib} MiB, 1 client", "s", False))
    results.declare(Figure("proxy.warm1", f"warm pull {blob_mib} MiB, 1 client", "s", False))
    results.declare(Figure("proxy.local1", f"local blob pull {blob_mib} MiB, 1 client (k3sreg push)", "s", False))


def _upstream_gets(upstream: Server, digest: str) -> int:
    pattern = re.compile(rf'"GET /v2/{re.escape(REPO)}/blobs/{re.escape(digest)}[ ?]')
    text = upstream.log.read_text(errors="replace") if upstream.log.exists() else ""
    return len(pattern.findall(text))


def _start_cache(ctx: Context, kind: str, upstream: Server, tag: str) -> Server:
    where = ctx.subdir("proxy", f"{kind}-{tag}")
    if kind == K3SREG:
        return start_k3sreg(
            where, ctx.config.workers, {"upstreams": [{"name": "docker.io", "url": upstream.url, "retries": 0}]}
        )
    return start_docker_registry(where, {"proxy": {"remoteurl": upstream.url}})


def _blob_url(cache: Server, digest: str) -> str:
    # containerd's form for k3sreg; registry:2 in proxy mode ignores `ns` anyway.
    return f"{cache.url}/v2/{REPO}/blobs/{digest}?ns=docker.io"


async def _seed(upstream: Server, blob: BlobFile) -> None:
    async with aiohttp.ClientSession() as session:
        await client.push_monolithic(session, upstream.url, REPO, blob)


async def run(ctx: Context, results: Results) -> None:
    blob_mib = min(BLOB_MIB, ctx.config.blob_mib)
    _declare(results, blob_mib)
    kinds = [k for k in (K3SREG, DOCKER_REGISTRY) if ctx.wants(k)]
    blob = await asyncio.to_thread(content.write_blob, ctx.subdir("proxy") / "blob", blob_mib, 64)
    try:
        upstream = await asyncio.to_thread(
            start_docker_registry,
            ctx.subdir("proxy", "upstream"),
            {"log": {"level": "info", "accesslog": {"disabled": False}}},
        )
    except StartError as exc:
        results.notes.append(f"proxy upstream did not start: {exc}")
        return
    try:
        await _seed(upstream, blob)
        for round_no in range(ctx.config.runs):
            for n in HERDS:
                for kind in kinds:
                    await _herd(ctx, results, kind, upstream, blob, n, f"r{round_no}n{n}")
            for kind in kinds:
                await _single(ctx, results, kind, upstream, blob, f"r{round_no}s")
        if K3SREG in kinds:
            await _local(ctx, results, blob)
    finally:
        upstream.stop()


async def _herd(ctx: Context, results: Results, kind: str, upstream: Server, blob: BlobFile, n: int, tag: str) -> None:
    try:
        cache = await asyncio.to_thread(_start_cache, ctx, kind, upstream, tag)
    except StartError as exc:
        results[f"proxy.done.{n}"].fail(kind, str(exc))
        return
    try:
        before = _upstream_gets(upstream, blob.digest)
        pulled = await asyncio.to_thread(client.pull, _blob_url(cache, blob.digest), blob.size, n)
        await asyncio.sleep(0.5)  # the upstream writes its access-log line just after the response
        results[f"proxy.fetches.{n}"].add(kind, _upstream_gets(upstream, blob.digest) - before)
        results[f"proxy.done.{n}"].add(kind, pulled.seconds)
        ctx.log(f"proxy {kind}: {n} cold clients in {pulled.seconds:.2f}s")
    except Exception as exc:
        results[f"proxy.done.{n}"].fail(kind, f"{type(exc).__name__}: {exc}")
    finally:
        await asyncio.to_thread(cache.stop)


async def _single(ctx: Context, results: Results, kind: str, upstream: Server, blob: BlobFile, tag: str) -> None:
    try:
        cache = await asyncio.to_thread(_start_cache, ctx, kind, upstream, tag)
    except StartError as exc:
        results["proxy.cold1"].fail(kind, str(exc))
        return
    try:
        url = _blob_url(cache, blob.digest)
        cold = await asyncio.to_thread(client.pull, url, blob.size, 1)
        await asyncio.sleep(0.5)  # let the cache commit before the warm pull
        warm = await asyncio.to_thread(client.pull, url, blob.size, 1)
        results["proxy.cold1"].add(kind, cold.seconds)
        results["proxy.warm1"].add(kind, warm.seconds)
    except Exception as exc:
        results["proxy.cold1"].fail(kind, f"{type(exc).__name__}: {exc}")
    finally:
        await asyncio.to_thread(cache.stop)


async def _local(ctx: Context, results: Results, blob: BlobFile) -> None:
    """The same bytes pushed to k3sreg and pulled back: what a warm cached pull should match."""
    server = await asyncio.to_thread(start_k3sreg, ctx.subdir("proxy", "local"), ctx.config.workers)
    try:
        async with aiohttp.ClientSession() as session:
            await client.push_monolithic(session, server.url, "team/big", blob)
        for _ in range(ctx.config.runs):
            got = await asyncio.to_thread(client.pull, f"{server.url}/v2/team/big/blobs/{blob.digest}", blob.size, 1)
            results["proxy.local1"].add(K3SREG, got.seconds)
    finally:
        await asyncio.to_thread(server.stop)
