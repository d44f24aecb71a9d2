"""The operations the core scenario times, each on one server, and the setup that precedes them.

Every operation returns an `Outcome`: the figure values it measured and how much work it did (GB moved or
requests served), so that the server's CPU time over the operation can be reported per unit of work too.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp

from bench import client, content
from bench.content import MANIFEST_ACCEPT, BlobFile, SmallBlob
from bench.context import Context
from bench.load import LoadResult, run_ab_head, run_wrk
from bench.procs import MIB, peak_memory
from bench.report import Results
from bench.servers import Server

APP = "bench/app"
TAGS = "bench/tags"


@dataclass(frozen=True)
class Outcome:
    """Figure values measured by one operation, and its amount of work (GB or requests)."""

    values: dict[str, float]
    work: float


async def push(server: Server, blob: BlobFile, chunk: int | None) -> Outcome:
    """One push of blob (monolithic when chunk is None), on a new connection as a client pushing a layer does."""
    async with aiohttp.ClientSession() as session:
        if chunk is None:
            seconds = await client.push_monolithic(session, server.url, APP, blob)
        else:
            seconds = await client.push_chunked(session, server.url, APP, blob, chunk)
    key = "push.monolithic" if chunk is None else "push.chunked"
    return Outcome({key: blob.size / seconds / 1e6}, blob.size / 1e9)


def drop_blob_file(server: Server, blob: BlobFile) -> None:
    """Remove a pushed blob's data file from the server's storage, so that many pushes of new digests do not
    fill a tmpfs; the registry is not asked (its delete keeps the data until a garbage collection)."""
    path = server.data_dir / "docker" / "registry" / "v2" / "blobs" / "sha256" / blob.hex[:2] / blob.hex / "data"
    path.unlink(missing_ok=True)


async def pull(server: Server, blob: BlobFile, clients: int) -> Outcome:
    """blob pulled by `clients` concurrent connections; aggregate MB/s."""
    url = f"{server.url}/v2/{APP}/blobs/{blob.digest}"
    result = await asyncio.to_thread(client.pull, url, blob.size, clients)
    return Outcome({f"pull.{clients}": result.mb_per_s}, result.nbytes / 1e9)


def _load(prefix: str, result: LoadResult, keys: tuple[str, ...] = ("rps", "p50", "p99")) -> Outcome:
    every = {"rps": result.rps, "p50": result.p50_ms, "p99": result.p99_ms}
    return Outcome({f"{prefix}.{k}": every[k] for k in keys}, float(result.requests))


async def manifest_get(ctx: Context, server: Server) -> Outcome:
    """wrk on GET manifest by tag with containerd's Accept header."""
    cfg = ctx.config
    url = f"{server.url}/v2/{APP}/manifests/latest"
    result = await run_wrk(
        url,
        ctx.workdir,
        accept=MANIFEST_ACCEPT,
        threads=cfg.wrk_threads,
        connections=cfg.connections,
        seconds=cfg.load_seconds,
    )
    return _load("manifest", result)


async def blob_head(ctx: Context, server: Server, blob: BlobFile) -> Outcome:
    """ab -i (HEAD) on the big blob."""
    cfg = ctx.config
    url = f"{server.url}/v2/{APP}/blobs/{blob.digest}"
    result = await run_ab_head(url, ctx.workdir, connections=cfg.connections, seconds=cfg.load_seconds)
    return _load("head", result)


async def tags_list(ctx: Context, server: Server) -> Outcome:
    """wrk on GET tags/list of the repository with many tags."""
    cfg = ctx.config
    url = f"{server.url}/v2/{TAGS}/tags/list"
    result = await run_wrk(
        url,
        ctx.workdir,
        accept="application/json",
        threads=cfg.wrk_threads,
        connections=cfg.connections,
        seconds=cfg.load_seconds,
    )
    return _load("tags", result, ("rps", "p99"))


async def memory_in_blob_size(
    ctx: Context, results: Results, servers: dict[str, Server], small: BlobFile, big: BlobFile
) -> None:
    """Peak RSS per process after small-blob traffic, then after the same traffic with the big blob."""
    chunk = ctx.config.chunk_mib * MIB
    # Writers first: nginx serves the files they just stored.
    for server in sorted(servers.values(), key=lambda s: not s.writable):
        try:
            # Three times with the small blob, so that every code path of every worker (and the allocator's
            # pools) is warm before the first reading: what remains is what blob size costs.
            await _exercise(server, small, chunk, times=3)
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


async def _exercise(server: Server, blob: BlobFile, chunk: int, times: int) -> None:
    for i in range(times):
        if server.writable:
            # The blob itself first (pulls and nginx need it), then new digests, as measured pushes use.
            await push(server, blob if i == 0 else blob.variant(-i), None)
            await push(server, blob.variant(-i - 100), chunk)
        await pull(server, blob, 1)
        await pull(server, blob, 8)


async def store_manifests(ctx: Context, results: Results, servers: dict[str, Server], big: BlobFile) -> None:
    """`bench/app:latest` referencing the big blob, and one small manifest under N tags in `bench/tags`."""
    config = content.config_blob("app")
    manifest = content.manifest_for(config, [content.layer_descriptor(big)])
    tag_config = content.config_blob("tags")
    tag_layer = SmallBlob(b"k3sreg bench layer\n", content.OCI_LAYER)
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
            for fig in results.figures.values():
                if fig.key.startswith(("manifest.", "tags.", "cpu.manifest", "cpu.tags")):
                    fig.fail(server.name, f"storing the manifests failed: {type(exc).__name__}: {exc}")
            continue
        count = len(listed.get("tags") or []) if isinstance(listed, dict) else 0
        if count != len(tags):
            results.notes.append(f"{server.name}: tags/list without `n` returned {count} of {len(tags)} tags")
        ctx.log(f"{server.name}: manifest and {len(tags)} tags stored; tags/list returns {count}")


def _write_static(server: Server, manifest: SmallBlob, tags: list[str]) -> None:
    assert server.static_dir is not None
    path = server.static_dir / "manifests" / APP / "latest"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(manifest.data)
    listing = server.static_dir / "tags" / TAGS / "list"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(json.dumps({"name": TAGS, "tags": sorted(tags)}))
