"""`images export` and `images import`: an image list into one bundle file, and a bundle into a registry (and
into the tarballs K3s imports at start).

Export copies the images into a layout next to the output (`.NAME.layout/`, kept when the run fails, so the
next run resumes from it; removed once the bundle is written), then packs it (`bundle.pack`). Import verifies
every blob of the bundle before it pushes anything, then pushes blobs, manifests and tags (`copy.Copier`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from k3sreg.errors import K3sregError, UsageError
from k3sreg.images.bundle import BundleReader, pack, unpack
from k3sreg.images.copy import Copier, Summary, Target
from k3sreg.images.events import Quiet, Reporter
from k3sreg.images.layout import LayoutSource, LayoutTarget, blob_path
from k3sreg.images.lists import ImageList
from k3sreg.images.model import Image
from k3sreg.images.remote import Sources
from k3sreg.images.resolve import Resolver
from k3sreg.images.tarball import write_k3s_tarballs


async def export_list(images: ImageList, out: Path, *, jobs: int = 8, plain_http: bool = False,
                      new_index: bool = False, level: int = 3, reporter: Reporter | None = None) -> Summary:
    """Write the bundle of every image of `images` to `out`; the summary of the copy into the spool layout."""
    reporter = reporter or Quiet()
    if out.is_dir():
        raise UsageError(f"{out} is a directory; give the bundle's file name, e.g. -o images.tar.zst")
    spool = out.parent / f".{out.name}.layout"
    sources = Sources(images.access, plain_http)
    try:
        resolved = await Resolver(sources, jobs, reporter, new_index).resolve(images.entries)
        summary = await Copier(LayoutTarget(spool), jobs, reporter).run(resolved)
    finally:
        await sources.close()
    if summary.failed:
        return summary
    layout = LayoutSource(spool)
    total = sum(image.root.size() for image in resolved)
    reporter.started("pack", f"write {out.name}", total)
    try:
        size = await asyncio.to_thread(pack, resolved, layout.open_file, out, level, 0,
                                       lambda n: reporter.transferred("pack", n))
    finally:
        reporter.finished("pack")
    reporter.event("written", path=str(out), bytes=size, images=len(resolved))
    shutil.rmtree(spool, ignore_errors=True)
    return summary


def select(images: list[Image], patterns: Sequence[str]) -> list[Image]:
    """The images whose reference (or name) matches one of the shell `patterns`; all when none is given."""
    if not patterns:
        return images
    chosen = [i for i in images if any(fnmatch.fnmatchcase(i.reference, p) or fnmatch.fnmatchcase(i.name, p)
                                       for p in patterns)]
    if not chosen:
        raise UsageError(f"no image of the bundle matches {', '.join(patterns)}; the bundle holds: "
                         f"{', '.join(i.reference for i in images)}")
    return chosen


async def import_bundle(path: Path, target: Target | None, *, k3s: Path | None = None,
                        only: Sequence[str] = (), jobs: int = 8, reporter: Reporter | None = None) -> Summary:
    """Verify the bundle at `path`, then push its images into `target` and/or write K3s tarballs into `k3s`."""
    reporter = reporter or Quiet()
    reader = await asyncio.to_thread(BundleReader.open, path)
    spool: Path | None = None
    try:
        if reader is None:
            # Not a frame-indexed bundle (re-compressed by another tool): unpack it, verifying as it streams.
            spool = Path(tempfile.mkdtemp(prefix=".k3sreg-import-", dir=path.parent))
            reporter.started("verify", "unpack and verify", path.stat().st_size)
            try:
                await asyncio.to_thread(unpack, path, spool, lambda n: reporter.transferred("verify", n))
            finally:
                reporter.finished("verify")
            images = select(LayoutSource(spool).images(), only)
            for image in images:
                for blob in image.root.all_blobs():
                    if not blob_path(spool, blob.digest).exists():
                        raise K3sregError(f"{path}: blob {blob.digest} of {image.reference} is missing; the "
                                          "bundle is incomplete or truncated; nothing was pushed")
        else:
            images = select(reader.images(), only)
            reader.check_complete(images)
            needed = {blob.digest for image in images for blob in image.root.all_blobs()}
            reporter.started("verify", "verify", sum(reader.frames[d].size for d in needed))
            try:
                await asyncio.to_thread(reader.verify, needed, 0, lambda n: reporter.transferred("verify", n))
            finally:
                reporter.finished("verify")
        reporter.event("verified", images=len(images))
        summary = Summary(images=len(images))
        if target is not None:
            summary = await Copier(target, jobs, reporter).run(images)
        if k3s is not None and not summary.failed:
            written = await asyncio.to_thread(write_k3s_tarballs, images, k3s)
            for file in written:
                reporter.event("written", path=str(file), bytes=file.stat().st_size)
        return summary
    finally:
        if target is not None:
            await target.close()
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
