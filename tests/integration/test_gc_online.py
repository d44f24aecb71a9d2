"""Garbage collection inside `serve` while clients push and delete, with no read-only mode.

Eight clients push images that share layers (uploading, skipping what a HEAD finds, mounting from each other's
repositories), multi-arch indexes and referrers, and delete tags, for 60 s against two workers that collect
garbage every second (delete_untagged, a 2 s delay). A manifest PUT may answer MANIFEST_BLOB_UNKNOWN when a
blob the client found by HEAD was collected before the PUT (the client then pushes again, as skopeo would);
nothing else may fail. Afterwards every tag a client still holds pulls completely with `skopeo copy --all`,
scrub finds nothing missing, and no blob or untagged manifest older than the delay is left unreferenced.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from k3sreg import errors
from k3sreg.storage import catalog, paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.gc import blob_digests, last_report
from k3sreg.storage.guard import BlobGuard
from k3sreg.storage.manifests import ManifestStore
from k3sreg.storage.mark import Mark, load_needs
from tests.integration.oci_client import (
    OCI_CONFIG,
    Blob,
    Document,
    RegistryClient,
    connect,
    filler,
    image_index,
    image_manifest,
)
from tests.integration.test_metrics import scrape, value
from tests.peers.registry import K3SREG_BIN, K3sregServer
from tests.peers.skopeo import Skopeo

CLIENTS, SECONDS, DELAY = 8, 60.0, 2.0
SHARED = [Blob(filler(f"shared base {i}", 2048 * (i + 1))) for i in range(6)]


@dataclass
class Tally:
    pushes: int = 0
    blob_unknown: int = 0
    deletes: int = 0
    pulls: int = 0
    live: dict[str, list[str]] = field(default_factory=dict)  # repo -> tags a client holds


class Client:
    """One client's loop: push, sometimes an index or a referrer, delete its oldest tags, pull its own."""

    def __init__(self, c: RegistryClient, n: int, tally: Tally, rng: random.Random):
        self.c, self.n, self.tally, self.rng = c, n, tally, rng
        self.repo = f"load/c{n}"
        self.tags: list[str] = []
        tally.live[self.repo] = self.tags
        self.count = 0

    async def blob(self, blob: Blob) -> None:
        if (await self.c.request("HEAD", f"/v2/{self.repo}/blobs/{blob.digest}")).status == 200:
            return  # the client skips it: a collection may take it before the manifest comes
        other = f"load/c{self.rng.randrange(CLIENTS)}"
        if other != self.repo and self.rng.random() < 0.5:
            mounted = await self.c.request("POST", f"/v2/{self.repo}/blobs/uploads/?mount={blob.digest}&from={other}",
                                           body=b"", headers={"Content-Length": "0"})
            if mounted.status == 201:
                return
            assert mounted.status == 202, (mounted.status, mounted.body[:200])
            await self.c.request("DELETE", mounted.location)
        await self.c.push_blob(self.repo, blob)

    async def manifest(self, ref: str, doc: Document, blobs: list[Blob]) -> None:
        """Push `blobs`, then `doc`; again from the start when a blob vanished in between."""
        for _ in range(20):
            for blob in blobs:
                await self.blob(blob)
            reply = await self.c.put_manifest(self.repo, ref, doc)
            if reply.status == 201:
                self.tally.pushes += 1
                return
            assert reply.status == 400 and reply.error_codes()[0] == "MANIFEST_BLOB_UNKNOWN", \
                (reply.status, reply.body[:300])
            self.tally.blob_unknown += 1
        raise AssertionError(f"{self.repo}:{ref} never went in")

    async def image(self, ref: str | None) -> Document:
        self.count += 1
        config = Blob(json.dumps({"architecture": "amd64", "os": "linux", "c": self.n, "i": self.count}).encode(),
                      OCI_CONFIG)
        layers = [*self.rng.sample(SHARED, 2), Blob(filler(f"c{self.n} {self.rng.randrange(4)}", 3000))]
        doc = image_manifest(config, layers)
        await self.manifest(ref or doc.digest, doc, [config, *layers])
        return doc

    async def step(self) -> None:
        roll = self.rng.random()
        tag = f"t{self.count}"
        if roll < 0.2:
            children = [await self.image(None), await self.image(None)]
            await self.manifest(tag, image_index(children), [])
        else:
            subject = await self.image(tag)
            if roll > 0.8:
                sig_layer = Blob(filler(f"sig {self.n} {self.count}", 200))
                sig_config = Blob(b"{}", "application/vnd.oci.empty.v1+json")
                sig = image_manifest(sig_config, [sig_layer], subject=subject, artifact_type="application/x-sig")
                await self.manifest(sig.digest, sig, [sig_config, sig_layer])
        self.tags.append(tag)
        while len(self.tags) > 3:
            old = self.tags.pop(0)
            reply = await self.c.request("DELETE", f"/v2/{self.repo}/manifests/{old}")
            assert reply.status == 202, (reply.status, reply.body[:200])
            self.tally.deletes += 1
        await self.pull(self.rng.choice(self.tags))

    async def pull(self, tag: str) -> None:
        """GET the tag's manifest, its children, and every blob they need, checking each digest."""
        todo = [tag]
        while todo:
            ref = todo.pop()
            reply = await self.c.request("GET", f"/v2/{self.repo}/manifests/{ref}",
                                         headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                                                            "application/vnd.oci.image.manifest.v1+json"})
            assert reply.status == 200, (self.repo, ref, reply.status, reply.body[:200])
            doc = reply.json()
            todo += [m["digest"] for m in doc.get("manifests", [])]
            for desc in [doc["config"], *doc["layers"]] if "config" in doc else []:
                blob = await self.c.request("GET", f"/v2/{self.repo}/blobs/{desc['digest']}")
                assert blob.status == 200 and Blob(blob.body).digest == desc["digest"], (self.repo, ref, desc)
        self.tally.pulls += 1


async def _load(url: str, tally: Tally) -> None:
    deadline = time.monotonic() + SECONDS

    async def one(n: int) -> None:
        async with connect(url, fresh_connections=n % 2 == 0) as c:
            client = Client(c, n, tally, random.Random(n))
            while time.monotonic() < deadline:
                await client.step()

    await asyncio.gather(*(one(n) for n in range(CLIENTS)))


def _unreferenced(root: Path, before: float) -> tuple[list[str], list[str]]:
    """Blobs with nothing newer than `before` that no manifest needs, and untagged manifests no tag reaches
    that were pushed before `before` (read straight from the store)."""
    store = ManifestStore(BlobStore(FilesystemDriver(root)))
    driver, mark, stale = store.driver, Mark(), []
    repos = catalog.repositories(driver)
    for repo in repos:
        for d in store.linked(repo):
            mark.keep(repo, d, (d, *load_needs(store, d).refs))
    guard = BlobGuard(driver, None, lambda d: True)
    blobs = [str(d) for d in blob_digests(driver) if not mark.kept(d) and (guard.newest(d) or 0) <= before]
    for repo in repos:
        try:
            reached = {store.resolve(repo, t) for t in store.tags.list(repo)}
        except errors.NameUnknown:
            reached = set()
        todo = list(reached)
        while todo:
            children = load_needs(store, todo.pop()).children
            todo += [c for c in children if c not in reached]
            reached.update(children)
        for d in store.linked(repo):
            info = driver.stat(paths.revision_link(repo, d))
            kept = d in reached or load_needs(store, d).subject in reached
            if not kept and info is not None and info.mtime <= before:
                stale.append(f"{repo}@{d}")
    return blobs, stale


def test_collection_under_load_loses_nothing_referenced(tmp_path: Path) -> None:
    """8 clients for 60 s against two workers collecting every second: every held tag pulls completely
    afterwards, nothing is missing, and nothing older than the delay is left unreferenced."""
    config = {"storage": {"delete": {"enabled": True},
                          "gc": {"interval": "1s", "delay": f"{DELAY:g}s", "deleteuntagged": True}}}
    tally = Tally()
    with K3sregServer(tmp_path / "srv", config=config, workers=2) as server:
        asyncio.run(_load(server.url, tally))
        ended = time.time()
        for repo, tags in tally.live.items():
            for tag in tags:
                into = tmp_path / "pulled" / repo / tag
                into.mkdir(parents=True)
                Skopeo().copy(f"docker://{server.host}/{repo}:{tag}", f"dir:{into}", all=True)
        driver = FilesystemDriver(server.root)
        deadline = time.monotonic() + 60
        while (report := last_report(driver)) is None or report.started < ended + DELAY + 1:
            assert time.monotonic() < deadline, "no collection ran after the load"
            time.sleep(0.5)
        log = server.log_text()
        metered = scrape(f"{server.url}/metrics")
    scrub = subprocess.run([str(K3SREG_BIN), "scrub", str(server.config_path)], capture_output=True, text=True,
                           timeout=300, check=False)
    assert scrub.returncode == 0, scrub.stdout[-3000:]
    blobs, manifests = _unreferenced(server.root, report.started - DELAY - 0.5)
    assert blobs == [] and manifests == []
    freed = [line for line in log.splitlines() if "garbage collection: removed" in line]
    removed = sum(int(line.split(" manifests and ")[1].split(" blobs")[0]) for line in freed)
    print(f"\n{tally.pushes} pushes, {tally.deletes} tag deletes, {tally.pulls} pulls, {tally.blob_unknown} "
          f"MANIFEST_BLOB_UNKNOWN retried, {len(freed)} collections removed {removed} blobs")
    assert tally.pushes > 100 and tally.deletes > 50 and removed > 0
    assert value(metered, "k3sreg_gc_runs_total") >= len(freed) and value(metered, "k3sreg_gc_freed_bytes_total") > 0
