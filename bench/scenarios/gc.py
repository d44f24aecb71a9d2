"""Issue 14 §1: mark and sweep of a store of 100,000 blobs and 10,000 manifests, `k3sreg garbage-collect`
beside docker-registry 2.8.2's `garbage-collect` on copies of the same store.

The store is written straight to disk in Distribution's layout (no server, no fsync): 100 repositories of 100
tagged images each, every image one config, two layers of a pool of 100 base layers that all images share, and
four layers of its own; plus 39,900 blobs that no manifest needs (uploads never referenced, layers of deleted
images), linked into the repositories as pushes leave them. Blobs are small (the sweep's cost is per blob and
per file, not per byte). Each round copies the store once per collector, then times one whole run of each as
a process (`garbage-collect CONFIG`, its lines to /dev/null: both print ~80,000) and reads its peak RSS. Both
must remove exactly the 39,900 unneeded blobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from bench.context import Context
from bench.procs import status_kib, with_bytecode_cache
from bench.report import Figure, Results
from bench.servers import DOCKER_REGISTRY, K3SREG, k3sreg_binary

REPOS, IMAGES, BASES, OWN = 100, 100, 100, 4
MANIFESTS = REPOS * IMAGES
NEEDED = MANIFESTS * (2 + OWN) + BASES  # manifests, configs, own layers, shared bases
BLOBS = 100_000
GARBAGE = BLOBS - NEEDED
V2 = "docker/registry/v2"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class _Writer:
    """Files of Distribution's layout, written plainly (a benchmark store needs no atomicity)."""

    def __init__(self, root: Path):
        self.root = root / V2
        self.made: set[str] = set()

    def file(self, rel: str, data: bytes) -> None:
        path = f"{self.root}/{rel}"
        parent = path.rsplit("/", 1)[0]
        if parent not in self.made:
            os.makedirs(parent, exist_ok=True)
            self.made.add(parent)
        with open(path, "wb") as f:
            f.write(data)

    def blob(self, data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        self.file(f"blobs/sha256/{hexd[:2]}/{hexd}/data", data)
        return f"sha256:{hexd}"

    def link(self, rel: str, digest: str) -> None:
        self.file(f"{rel}/sha256/{digest[7:]}/link", digest.encode())


def _descriptor(media_type: str, digest: str, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def build(root: Path) -> None:
    """Write the store under `root`."""
    w = _Writer(root)
    bases = [w.blob(f"base {i} ".encode().ljust(512, b".")) for i in range(BASES)]
    for r in range(REPOS):
        repo = f"repositories/team{r // 10}/app{r:03d}"
        for i in range(IMAGES):
            n = r * IMAGES + i
            config = f'{{"image": {n}}}'.encode()
            own = [f"own {n} {j} ".encode().ljust(256, b".") for j in range(OWN)]
            shared = [bases[n % BASES], bases[(n * 7 + 1) % BASES]]
            layers = [_descriptor(LAYER, d, 512) for d in shared]
            layers += [_descriptor(LAYER, w.blob(data), len(data)) for data in own]
            doc = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                              "config": _descriptor("application/vnd.oci.image.config.v1+json", w.blob(config),
                                                    len(config)),
                              "layers": layers}).encode()
            manifest = w.blob(doc)
            for desc in layers:
                w.link(f"{repo}/_layers", str(desc["digest"]))
            w.link(f"{repo}/_manifests/revisions", manifest)
            w.link(f"{repo}/_manifests/tags/v{i}/index", manifest)
            w.file(f"{repo}/_manifests/tags/v{i}/current/link", manifest.encode())
    for g in range(GARBAGE):
        repo = f"repositories/team{g % 10}/app{(g % REPOS):03d}"
        w.link(f"{repo}/_layers", w.blob(f"unneeded {g} ".encode().ljust(256, b".")))


def _config(root: Path, at: Path) -> Path:
    at.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")
    return at


def collect(command: list[str]) -> tuple[float, float, str]:
    """Run one collection process: (seconds, peak RSS in MiB, its count line).

    The peak is the process's VmHWM, read while it runs: a child's rusage would count the memory of the
    process that started it (exec keeps the high-water mark of the forked copy)."""
    began = time.perf_counter()
    peak, done = [0], threading.Event()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=with_bytecode_cache()) as proc:

        def watch() -> None:
            while not done.wait(0.002):
                peak[0] = max(peak[0], status_kib(proc.pid, "VmHWM"))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        tail = b""
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"blobs marked" in line:
                tail = line
        proc.wait()
        done.set()
        watcher.join()
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {proc.returncode}")
    return seconds, peak[0] / 1024, tail.decode().strip()


def _count_blobs(root: Path) -> int:
    return sum(1 for _ in (root / V2 / "blobs").glob("sha256/*/*/data"))


async def run(ctx: Context, results: Results) -> None:
    columns = [c for c in (K3SREG, DOCKER_REGISTRY) if ctx.wants(c)]
    if not columns:
        return
    label = f"garbage-collect {BLOBS:,} blobs / {MANIFESTS:,} manifests ({GARBAGE:,} unneeded)"
    seconds = results.declare(Figure("gc.seconds", label, "s", False))
    rss = results.declare(Figure("gc.rss", "garbage-collect: peak RSS", "MiB", False))
    source = ctx.subdir("gc", "source")
    ctx.log(f"gc: writing {BLOBS:,} blobs and {MANIFESTS:,} manifests to {source}")
    await asyncio.to_thread(build, source)
    binaries = {K3SREG: str(k3sreg_binary()), DOCKER_REGISTRY: "docker-registry"}
    # A warm-up run on an empty store writes k3sreg's bytecode cache, which the timed runs then use (as the
    # startup rows do).
    warm = _config(ctx.subdir("gc", "empty"), ctx.workdir / "gc" / "empty.yml")
    await asyncio.to_thread(subprocess.run, [binaries[K3SREG], "garbage-collect", str(warm)],
                            env=with_bytecode_cache(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            check=False)
    for round_no in range(ctx.config.runs):
        for column in columns:
            copy = ctx.workdir / "gc" / f"{column}-{round_no}"
            await asyncio.to_thread(subprocess.run, ["cp", "-a", str(source), str(copy)], check=True)
            config = _config(copy, ctx.workdir / "gc" / f"{column}.yml")
            try:
                took, peak, line = await asyncio.to_thread(collect, [binaries[column], "garbage-collect",
                                                                     str(config)])
                left = await asyncio.to_thread(_count_blobs, copy)
            except (RuntimeError, OSError) as e:
                seconds.fail(column, str(e))
                rss.fail(column, str(e))
                continue
            finally:
                await asyncio.to_thread(shutil.rmtree, copy, True)
            if left != NEEDED:
                seconds.fail(column, f"left {left} blobs, not {NEEDED} ({line})")
                continue
            seconds.add(column, took)
            rss.add(column, peak)
            ctx.log(f"gc: {column} {took:.1f}s, peak RSS {peak:.0f} MiB ({line})")
