"""Issue 13: `k3sreg images` sync / export / import against skopeo, on the same images, and the import's memory.

Content: 8 images of 4 layers each, all sharing the first (base) layer, pseudo-random (incompressible, as gzip
layers are), in a docker-registry 2.8.2 that plays the internet. Each round, for each tool, into FRESH targets:

    sync to a registry   k3sreg images sync -f list --to K        skopeo sync --src yaml --dest docker list K
    export to one file   k3sreg images export -f list -o b.tar.zst skopeo sync --src yaml --dest dir list D
                                                                   + tar -C D -cf - . | zstd -T0 -3 -o b.tar.zst
    import into K        k3sreg images import b.tar.zst --to K     skopeo copy oci:L:<ref> docker://K/... for
                                                                   each image, from the bundle already unpacked
                                                                   into the layout L (the unpacking not timed)

K is a k3sreg (2 workers) in every case. The memory row packs a bundle of 4 GiB of random layers (512 MiB with
--quick) on disk, imports it into a k3sreg, and reads the import process's peak RSS (wait4's ru_maxrss).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.context import Context
from bench.procs import MIB, StartError, with_bytecode_cache
from bench.report import SKOPEO, Figure, Results, Target
from bench.servers import K3SREG, Server, k3sreg_binary, start_docker_registry, start_k3sreg

IMAGES = 8
LAYERS = 3  # per image, besides the shared base


def _declare(results: Results, total_mib: int, rss_gib: float) -> None:
    faster = Target("ratio_max", 1 / 1.5, reference=SKOPEO, text="≥1.5x faster than skopeo")
    results.declare(Figure("airgap.sync", f"images sync {IMAGES} images, {total_mib} MiB, to a registry", "s",
                           False, faster))
    results.declare(Figure("airgap.export", f"images export {total_mib} MiB (skopeo: sync to dir, then tar + zstd)",
                           "s", False, faster))
    results.declare(Figure("airgap.import", f"images import {total_mib} MiB (skopeo: copy one by one)", "s",
                           False, faster))
    results.declare(Figure("airgap.rss_export", f"images export peak RSS, {total_mib} MiB", "MiB", False))
    results.declare(Figure("airgap.rss_import", f"images import peak RSS, {rss_gib:g} GiB bundle", "MiB", False,
                           Target("abs_max", 150, text="≤150 MiB")))


def write_layout(root: Path, base_mib: int, layer_mib: int, seed: int, images: int = IMAGES) -> int:
    """An OCI layout of `images` images named docker.io/bench/imgN:1; its unique bytes."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    noise = os.urandom(MIB)
    total = 0

    def blob(data_mib: int, label: str) -> dict[str, object]:
        nonlocal total
        hasher = hashlib.sha256()
        tmp = blobs / ".tmp"
        with tmp.open("wb") as out:
            head = hashlib.sha512(f"{seed} {label}".encode()).digest()
            for i in range(data_mib):
                # Each MiB differs (its first 64 bytes), so no compressor finds repeats.
                chunk = hashlib.sha512(head + i.to_bytes(8, "big")).digest() + noise[64:]
                hasher.update(chunk)
                out.write(chunk)
        digest = hasher.hexdigest()
        tmp.replace(blobs / digest)
        total += data_mib * MIB
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{digest}",
                "size": data_mib * MIB}

    def small(doc: object, media_type: str) -> dict[str, object]:
        data = json.dumps(doc).encode()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    base = blob(base_mib, "base")
    entries = []
    for n in range(images):
        layers = [base, *(blob(layer_mib, f"img{n} layer{k}") for k in range(LAYERS))]
        config = small({"architecture": "amd64", "os": "linux", "config": {"Labels": {"n": str(n)}},
                        "rootfs": {"type": "layers", "diff_ids": [str(x["digest"]) for x in layers]}},
                       "application/vnd.oci.image.config.v1+json")
        manifest = small({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": config, "layers": layers}, "application/vnd.oci.image.manifest.v1+json")
        name = f"docker.io/bench/img{n}:1"
        entries.append({**manifest, "annotations": {"org.opencontainers.image.ref.name": name,
                                                    "io.containerd.image.name": name}})
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    return total


def _timed(argv: list[str], cwd: Path | None = None, shell: bool = False) -> tuple[float, float]:
    """Run a command to its end; (seconds, peak RSS of that process in MiB). RuntimeError when it fails."""
    # With the bytecode cache, as every run after a user's first (see the startup scenario).
    env = with_bytecode_cache()
    began = time.monotonic()
    proc = subprocess.Popen(argv if not shell else " ".join(argv), cwd=cwd, shell=shell, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err}")
    return seconds, usage.ru_maxrss / 1024


def _fresh_target(ctx: Context, tag: str) -> Server:
    return start_k3sreg(ctx.subdir("airgap", tag), ctx.config.workers)


async def run(ctx: Context, results: Results) -> None:
    quick = ctx.config.blob_mib <= 64
    base_mib, layer_mib = (8, 2) if quick else (64, 16)
    rss_gib = 0.5 if quick else 4.0
    total_mib = base_mib + IMAGES * LAYERS * layer_mib
    _declare(results, total_mib, rss_gib)
    if not ctx.wants(K3SREG):
        return
    work = ctx.subdir("airgap")
    layout = work / "layout"
    await asyncio.to_thread(write_layout, layout, base_mib, layer_mib, 1)
    try:
        source = await asyncio.to_thread(start_docker_registry, work / "source")
    except StartError as exc:
        results.notes.append(f"airgap source did not start: {exc}")
        return
    k3sreg = str(k3sreg_binary())
    try:
        host = source.url.split("://", 1)[1]
        for n in range(IMAGES):
            await asyncio.to_thread(_timed, [k3sreg, "images", "push", str(layout), "--ref",
                                             f"docker.io/bench/img{n}:1", "--to", f"{host}/bench/img{n}:1"])
        ours = work / "list.yaml"
        ours.write_text(json.dumps({"registries": {"docker.io": {"url": source.url}},
                                    "images": [f"docker.io/bench/img{n}:1" for n in range(IMAGES)]}))
        theirs = work / "skopeo.yaml"
        theirs.write_text(json.dumps({host: {"tls-verify": False,
                                             "images": {f"bench/img{n}": ["1"] for n in range(IMAGES)}}}))
        for round_no in range(ctx.config.runs):
            await _round(ctx, results, k3sreg, ours, theirs, f"r{round_no}")
        await _memory(ctx, results, k3sreg, rss_gib)
    finally:
        await asyncio.to_thread(source.stop)


async def _round(ctx: Context, results: Results, k3sreg: str, ours: Path, theirs: Path, tag: str) -> None:
    work = ctx.subdir("airgap", tag)
    for tool in (K3SREG, SKOPEO):
        target = await asyncio.to_thread(_fresh_target, ctx, f"{tag}-{tool}-sync")
        host = target.url.split("://", 1)[1]
        try:
            if tool == K3SREG:
                argv = [k3sreg, "images", "sync", "-f", str(ours), "--to", target.url]
            else:
                argv = ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
                        str(theirs), f"{host}/"]
            seconds, _ = await asyncio.to_thread(_timed, argv)
            results["airgap.sync"].add(tool, seconds)
            ctx.log(f"airgap sync {tool}: {seconds:.2f}s")
        except RuntimeError as exc:
            results["airgap.sync"].fail(tool, str(exc))
        finally:
            await asyncio.to_thread(target.stop)
            shutil.rmtree(target.data_dir, ignore_errors=True)
    bundle = work / "k3sreg.tar.zst"
    try:
        seconds, rss = await asyncio.to_thread(_timed, [k3sreg, "images", "export", "-f", str(ours), "-o",
                                                        str(bundle)])
        results["airgap.export"].add(K3SREG, seconds)
        results["airgap.rss_export"].add(K3SREG, rss)
        ctx.log(f"airgap export k3sreg: {seconds:.2f}s, {rss:.0f} MiB")
    except RuntimeError as exc:
        results["airgap.export"].fail(K3SREG, str(exc))
        return
    try:
        began = time.monotonic()
        directory = work / "skopeo-dir"
        await asyncio.to_thread(_timed, ["skopeo", "sync", "--src", "yaml", "--dest", "dir",
                                         "--src-tls-verify=false", str(theirs), str(directory)])
        await asyncio.to_thread(_timed, ["tar", "-C", str(directory), "-cf", "-", ".", "|", "zstd", "-q", "-T0",
                                         "-3", "-o", str(work / "skopeo.tar.zst")], None, True)
        results["airgap.export"].add(SKOPEO, time.monotonic() - began)
        ctx.log(f"airgap export skopeo: {time.monotonic() - began:.2f}s")
    except RuntimeError as exc:
        results["airgap.export"].fail(SKOPEO, str(exc))
    finally:
        shutil.rmtree(work / "skopeo-dir", ignore_errors=True)
        (work / "skopeo.tar.zst").unlink(missing_ok=True)
    await _import(ctx, results, k3sreg, bundle, tag)
    bundle.unlink(missing_ok=True)


async def _import(ctx: Context, results: Results, k3sreg: str, bundle: Path, tag: str) -> None:
    unpacked = ctx.subdir("airgap", tag, "unpacked")
    await asyncio.to_thread(_timed, ["tar", "--zstd", "-xf", str(bundle), "-C", str(unpacked)])
    for tool in (K3SREG, SKOPEO):
        target = await asyncio.to_thread(_fresh_target, ctx, f"{tag}-{tool}-import")
        host = target.url.split("://", 1)[1]
        try:
            if tool == K3SREG:
                seconds, _ = await asyncio.to_thread(_timed, [k3sreg, "images", "import", str(bundle), "--to",
                                                              target.url])
            else:
                began = time.monotonic()
                for n in range(IMAGES):
                    await asyncio.to_thread(_timed, [
                        "skopeo", "copy", "-q", "--dest-tls-verify=false",
                        f"oci:{unpacked}:docker.io/bench/img{n}:1", f"docker://{host}/bench/img{n}:1"])
                seconds = time.monotonic() - began
            results["airgap.import"].add(tool, seconds)
            ctx.log(f"airgap import {tool}: {seconds:.2f}s")
        except RuntimeError as exc:
            results["airgap.import"].fail(tool, str(exc))
        finally:
            await asyncio.to_thread(target.stop)
            shutil.rmtree(target.data_dir, ignore_errors=True)
    shutil.rmtree(unpacked, ignore_errors=True)


async def _memory(ctx: Context, results: Results, k3sreg: str, gib: float) -> None:
    """Pack a big bundle on disk (not tmpfs: 2x its size is needed), import it, read the peak RSS."""
    from k3sreg.images.bundle import pack
    from k3sreg.images.layout import LayoutSource

    work = Path(tempfile.mkdtemp(prefix="k3sreg-bench-rss-", dir="/var/tmp"))
    try:
        layer_mib = int(gib * 1024) // (IMAGES * LAYERS + 2)
        await asyncio.to_thread(write_layout, work / "layout", layer_mib * 2, layer_mib, 2)
        source = LayoutSource(work / "layout")
        images = source.images()
        bundle = work / "big.tar.zst"
        await asyncio.to_thread(pack, images, source.open_file, bundle, 1)
        shutil.rmtree(work / "layout")
        target = await asyncio.to_thread(start_k3sreg, work / "target", ctx.config.workers)
        try:
            seconds, rss = await asyncio.to_thread(_timed, [k3sreg, "images", "import", str(bundle), "--to",
                                                            target.url])
            results["airgap.rss_import"].add(K3SREG, rss)
            ctx.log(f"airgap import of {bundle.stat().st_size / 2**30:.1f} GiB: {seconds:.1f}s, peak {rss:.0f} MiB")
        except RuntimeError as exc:
            results["airgap.rss_import"].fail(K3SREG, str(exc))
        finally:
            await asyncio.to_thread(target.stop)
    finally:
        shutil.rmtree(work, ignore_errors=True)
