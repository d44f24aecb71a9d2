"""Tags of a repository, in Distribution's layout: `_manifests/tags/<tag>/current/link` names the manifest a tag
points at now, `index/<alg>/<hex>/link` every manifest it has pointed at."""

from __future__ import annotations

import time

from k3sreg import errors
from k3sreg.oci.digest import Digest
from k3sreg.oci.names import is_valid_tag
from k3sreg.storage import paths
from k3sreg.storage.driver import Driver
from k3sreg.storage.links import read_link, write_link


class TagStore:
    """Tags on top of a Driver (synchronous; run in threads). Names are checked by the caller."""

    def __init__(self, driver: Driver):
        self.driver = driver
        self._lists: dict[str, tuple[float, list[str], list[str]]] = {}

    def current(self, repo: str, tag: str) -> Digest | None:
        """The digest `tag` points at, or None."""
        return read_link(self.driver, paths.tag_current_link(repo, tag))

    def point(self, repo: str, tag: str, d: Digest) -> None:
        """Make `tag` point at `d`: the index link first, the `current` link last (a crash between the two
        leaves a tag that is not listed, never one that names nothing)."""
        write_link(self.driver, paths.tag_index_link(repo, tag, d), d)
        write_link(self.driver, paths.tag_current_link(repo, tag), d)

    def delete(self, repo: str, tag: str) -> None:
        """Remove `tag`; MANIFEST_UNKNOWN when there is no such tag."""
        if not self.driver.delete(paths.tag_dir(repo, tag)):
            raise errors.ManifestUnknown(detail={"tag": tag})

    def untag(self, repo: str, d: Digest) -> None:
        """Remove every tag of `repo` that points at `d`."""
        for tag in self.driver.list(paths.tags(repo)):
            if read_link(self.driver, paths.tag_current_link(repo, tag)) == d:
                self.driver.delete(paths.tag_dir(repo, tag))

    def checked_at(self, repo: str, tag: str) -> float | None:
        """When the cache last confirmed `tag` upstream: the mtime of its `current` link (see AccessClock)."""
        info = self.driver.stat(paths.tag_current_link(repo, tag))
        return info.mtime if info else None

    def list(self, repo: str) -> list[str]:
        """Every tag of `repo`, sorted; NAME_UNKNOWN when the repository holds no manifests.

        Only tags with a `current` link count: a crash between writing a tag's index link and its current
        link leaves a directory that names nothing, and listing it would promise a tag nobody can pull.
        Checking each tag costs a stat, so the complete tags are remembered per repository, valid while the
        `tags/` directory keeps its mtime (adding or deleting a tag changes it; a tag that is complete stays
        so). A directory touched within the last second is rescanned, as its mtime may not have ticked yet.
        """
        info = self.driver.stat(paths.tags(repo))
        if info is None:
            raise errors.NameUnknown(detail={"name": repo})
        cached = self._lists.get(repo)
        if cached is not None and cached[0] == info.mtime:
            _, complete, incomplete = cached
            finished = [t for t in incomplete if self._complete(repo, t)]
            if not finished:
                return complete
            complete = sorted(complete + finished)
        else:
            names = [t for t in self.driver.list(paths.tags(repo)) if is_valid_tag(t)]
            complete = sorted(t for t in names if self._complete(repo, t))
            incomplete = sorted(set(names) - set(complete))
        if time.time() - info.mtime > 1.0:
            self._lists[repo] = (info.mtime, complete, [t for t in incomplete if t not in complete])
        return complete

    def _complete(self, repo: str, tag: str) -> bool:
        return self.driver.stat(paths.tag_current_link(repo, tag)) is not None
