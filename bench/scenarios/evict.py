"""Issue 9 §6: evicting 10% of a capped pull-through cache of 10,000 blobs and 1,000 manifests.

No server and no HTTP: the store is written straight to disk through the storage API, once per run, as 100
cached repositories under `docker.io/`, each holding 10 images of one config and nine layers (every blob
distinct, all of one size, so every image weighs the same) with last accesses one second apart. The cap is 90%
of what the cache holds, so one eviction run removes the 100 least recently pulled images and their 1,000
blobs. Each round copies the store (file times kept) and times one `Evictor.run` in a thread: the mark, the
sweep, the removals. The figure is in the k3sreg column; there is nothing to compare it with in the other two.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

from bench.context import Context
from bench.report import Figure, Results
from bench.servers import K3SREG
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.inventory import Inventory
from k3sreg.storage.manifests import ManifestStore
from k3sreg.upstream.evict import Evictor

REPOS, IMAGES, LAYERS = 100, 10, 9
BLOB_BYTES = 1024
EVICTED = REPOS * IMAGES // 10
NOW = 2_000_000_000.0


def _image(store: ManifestStore, repo: str, n: int) -> tuple[Digest, int]:
    """Image `n` of `repo`, one config and LAYERS layers of BLOB_BYTES each; (its digest, the bytes it holds)."""
    descriptors = []
    for part in range(LAYERS + 1):
        data = f"{repo} {n} {part} ".encode().ljust(BLOB_BYTES, b".")
        d = Digest.of(data)
        store.blobs.put_small(d, data)
        store.blobs.link(repo, d)
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(d),
                            "size": BLOB_BYTES})
    config, *layers = descriptors
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    doc = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config, "layers": layers})
    stored = store.put(repo, f"v{n}", doc.encode(), mt.OCI_MANIFEST, check_references=False)
    return stored.digest, stored.size + (LAYERS + 1) * BLOB_BYTES


def build(root: Path) -> int:
    """Write the cache under `root`; returns the cap that leaves all but the EVICTED oldest images."""
    driver = FilesystemDriver(root)
    store = ManifestStore(BlobStore(driver))
    weight, order = 0, 0
    for r in range(REPOS):
        repo = f"docker.io/library/app{r:03d}"
        for n in range(IMAGES):
            d, weight = _image(store, repo, n)
            # Oldest first across repositories: image n of every repository before image n + 1 of any.
            when = NOW - 100_000 + n * REPOS + r
            os.utime(driver.local_path(paths.revision_link(repo, d)), (when, when))
            order += 1
    return weight * (order - EVICTED)


def evict(root: Path, cap: int) -> tuple[float, int, int]:
    """One eviction run over the store at `root`: (seconds, manifests removed, blobs removed)."""
    store = ManifestStore(BlobStore(FilesystemDriver(root)))
    upstream = UpstreamSettings(name="docker.io", url="https://registry-1.docker.io", maxsize=cap)
    evictor = Evictor(Inventory(store), [upstream], None)
    began = time.perf_counter()
    report = evictor.run(NOW)
    return time.perf_counter() - began, len(report.manifests), len(report.blobs)


async def run(ctx: Context, results: Results) -> None:
    if not ctx.wants(K3SREG):
        return
    total = REPOS * IMAGES
    fig = results.declare(Figure("evict.cap", f"evict 10% of {total * (LAYERS + 1):,} blobs / {total:,} "
                                              "manifests (maxsize)", "s", False))
    source = ctx.subdir("evict", "source")
    ctx.log(f"evict: writing {total:,} images to {source}")
    cap = await asyncio.to_thread(build, source)
    for round_no in range(ctx.config.runs):
        copy = ctx.workdir / "evict" / f"round{round_no}"
        await asyncio.to_thread(shutil.copytree, source, copy)
        try:
            seconds, manifests, blobs = await asyncio.to_thread(evict, copy, cap)
        finally:
            await asyncio.to_thread(shutil.rmtree, copy, True)
        if (manifests, blobs) != (EVICTED, EVICTED * (LAYERS + 2)):
            fig.fail(K3SREG, f"evicted {manifests} manifests and {blobs} blobs, not {EVICTED} and "
                             f"{EVICTED * (LAYERS + 2)}")
            return
        fig.add(K3SREG, seconds)
        ctx.log(f"evict: {manifests} manifests and {blobs} blobs in {seconds:.2f}s")
