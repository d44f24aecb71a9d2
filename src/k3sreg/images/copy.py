"""Copying images into a target (a registry or an OCI layout) in three phases, so that nothing is half there:

    1. blobs      every blob of every image, up to `jobs` at once: skipped when the target holds it (HEAD),
                  mounted from a repository of the target that got it earlier in the run, else streamed from
                  the source (a layout target resumes a `.part` file from its end)
    2. manifests  by digest, children before the index that lists them, referrers after their subject
    3. tags       last: a tag never points at anything the target does not hold

An image whose tag already points at the same digest in the target is skipped whole. A failure in a phase
stops the copy before the next one begins: the run can simply be started again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from k3sreg.errors import K3sregError
from k3sreg.images.events import Quiet, Reporter
from k3sreg.images.model import Blob, BlobSource, Image, Node
from k3sreg.oci.digest import Digest


class Target(Protocol):
    """Where images are copied to: a registry (`remote.RegistryTarget`) or a layout (`layout.LayoutTarget`)."""

    display: str

    def repo_for(self, name: str) -> str: ...

    def ref_for(self, name: str, tag: str) -> str: ...

    async def tagged(self, repo: str, tag: str) -> Digest | None: ...

    async def has_manifest(self, repo: str, digest: Digest) -> bool: ...

    async def put_blob(self, repo: str, blob: Blob, chunks: Callable[[int], AsyncIterator[bytes]],
                       mount_from: str | None, progress: Callable[[int], Any]) -> str: ...

    async def put_manifest(self, repo: str, reference: str, node: Node) -> None: ...

    async def close(self) -> None: ...


@dataclass
class Summary:
    """What a copy did; `failed` lists one line per failure."""

    images: int = 0
    skipped_images: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "present_images": self.skipped_images, **self.counts,
                "bytes": self.bytes, "failed": len(self.failed), "seconds": round(self.seconds, 3)}


@dataclass
class _Job:
    repo: str
    blob: Blob
    source: BlobSource
    source_repo: str


class Copier:
    """Copies images into `target` with up to `jobs` blob transfers at once, reporting to `reporter`."""

    def __init__(self, target: Target, jobs: int = 8, reporter: Reporter | None = None) -> None:
        self.target = target
        self.jobs = max(1, jobs)
        self.reporter = reporter or Quiet()
        self.summary = Summary()
        self._held: dict[Digest, str] = {}  # a repository of the target known to hold the blob
        self._busy: dict[Digest, asyncio.Event] = {}

    async def run(self, images: Sequence[Image]) -> Summary:
        """Copy `images`; the summary's `failed` is empty when all of them arrived."""
        began = time.monotonic()
        todo = await self._unfinished(images)
        jobs = self._blob_jobs(todo)
        total = sum(job.blob.size for job in jobs)
        self.reporter.event("plan", images=len(images), blobs=len(jobs), bytes=total)
        await self._blobs(jobs)
        if not self.summary.failed:
            await self._manifests(todo)
        if not self.summary.failed:
            await self._tags(todo)
        self.summary.seconds = time.monotonic() - began
        self.reporter.event("done", **self.summary.to_json())
        return self.summary

    async def _unfinished(self, images: Sequence[Image]) -> list[Image]:
        self.summary.images = len(images)

        async def check(image: Image) -> bool:
            if image.tag is None:
                return not await self.target.has_manifest(self.target.repo_for(image.name), image.root.digest)
            return await self.target.tagged(self.target.repo_for(image.name), image.tag) != image.root.digest

        needed = await asyncio.gather(*(check(image) for image in images))
        todo = []
        for image, need in zip(images, needed, strict=True):
            status = "copying" if need else "present"
            self.reporter.event("image", ref=image.reference, digest=str(image.root.digest), status=status)
            if need:
                todo.append(image)
            else:
                self.summary.skipped_images += 1
        return todo

    def _blob_jobs(self, images: Sequence[Image]) -> list[_Job]:
        jobs: dict[tuple[str, Digest], _Job] = {}
        for image in images:
            repo = self.target.repo_for(image.name)
            for blob in image.root.all_blobs():
                jobs.setdefault((repo, blob.digest), _Job(repo, blob, image.source, image.source_repo))
        return list(jobs.values())

    async def _blobs(self, jobs: list[_Job]) -> None:
        gate = asyncio.Semaphore(self.jobs)

        async def one(job: _Job) -> None:
            async with gate:
                try:
                    await self._blob(job)
                except (K3sregError, OSError) as exc:
                    self.summary.failed.append(f"{job.repo}: blob {job.blob.digest}: {exc}")
                    self.reporter.event("error", message=self.summary.failed[-1])

        await asyncio.gather(*(one(job) for job in jobs))

    async def _blob(self, job: _Job) -> None:
        digest = job.blob.digest
        while digest in self._busy:  # another repository is getting it: then mount from there
            await self._busy[digest].wait()
        done = asyncio.Event()
        self._busy[digest] = done
        key = f"{job.repo}@{digest}"
        try:
            self.reporter.started(key, f"{job.repo.rsplit('/', 1)[-1]} {digest.hex[:12]}", job.blob.size)
            status = await self.target.put_blob(
                job.repo, job.blob, lambda offset: job.source.stream(job.source_repo, job.blob, offset),
                self._held.get(digest), lambda n: self.reporter.transferred(key, n))
            self._held.setdefault(digest, job.repo)
            self.summary.counts[status] = self.summary.counts.get(status, 0) + 1
            if status in ("copied", "resumed"):
                self.summary.bytes += job.blob.size
            self.reporter.event("blob", digest=str(digest), repo=job.repo, size=job.blob.size, status=status)
        finally:
            self.reporter.finished(key)
            del self._busy[digest]
            done.set()

    async def _manifests(self, images: Sequence[Image]) -> None:
        stored: set[tuple[str, Digest]] = set()
        for image in images:
            repo = self.target.repo_for(image.name)
            for node in image.root.nodes():
                if (repo, node.digest) in stored:
                    continue
                stored.add((repo, node.digest))
                try:
                    await self.target.put_manifest(repo, str(node.digest), node)
                except K3sregError as exc:
                    self.summary.failed.append(f"{repo}: manifest {node.digest}: {_why(exc, node)}")
                    self.reporter.event("error", message=self.summary.failed[-1])
                    return
                self.reporter.event("manifest", ref=f"{repo}@{node.digest}", digest=str(node.digest))

    async def _tags(self, images: Sequence[Image]) -> None:
        for image in images:
            if image.tag is None:
                continue
            repo = self.target.repo_for(image.name)
            try:
                await self.target.put_manifest(repo, image.tag, image.root)
            except K3sregError as exc:
                self.summary.failed.append(f"{repo}:{image.tag}: {exc}")
                self.reporter.event("error", message=self.summary.failed[-1])
                continue
            self.reporter.event("tag", ref=self.target.ref_for(image.name, image.tag),
                                digest=str(image.root.digest))


def _why(exc: K3sregError, node: Node) -> str:
    if not node.complete and "MANIFEST_BLOB_UNKNOWN" in str(exc):
        return (f"{exc}; this registry does not store an index whose other platforms are missing: copy all "
                "platforms, or add --platform-index filter to store a new index of the copied ones")
    return str(exc)
