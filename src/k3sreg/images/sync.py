"""`images sync`: resolve an image list against its registries and copy the images into a target."""

from __future__ import annotations

from k3sreg.images.copy import Copier, Summary, Target
from k3sreg.images.events import Reporter
from k3sreg.images.lists import ImageList
from k3sreg.images.remote import Sources
from k3sreg.images.resolve import Resolver


async def sync_list(images: ImageList, target: Target, *, jobs: int = 8, plain_http: bool = False,
                    new_index: bool = False, reporter: Reporter | None = None) -> Summary:
    """Copy every image of `images` into `target`; the target and the source clients are closed afterwards."""
    sources = Sources(images.access, plain_http)
    try:
        resolved = await Resolver(sources, jobs, reporter, new_index).resolve(images.entries)
        return await Copier(target, jobs, reporter).run(resolved)
    finally:
        await sources.close()
        await target.close()
