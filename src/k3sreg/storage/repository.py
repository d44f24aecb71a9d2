"""What handlers read of one repository (`Repository`), and that view of a local repository of the Store.

The pull-through cache (`upstream.cache.ProxyRepository`) implements the same Protocol, so handlers cannot
tell a local repository from a cached one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

from k3sreg.oci.digest import Digest
from k3sreg.oci.manifest import Descriptor
from k3sreg.storage.blobs import BlobInfo
from k3sreg.storage.manifests import StoredManifest
from k3sreg.storage.store import Store


class Repository(Protocol):
    """The reads of one repository that handlers use."""

    async def get_manifest(self, reference: str, accept: Sequence[str]) -> StoredManifest: ...

    async def stat_blob(self, d: Digest) -> BlobInfo: ...

    def local_path(self, info: BlobInfo) -> Path | None: ...

    def read_blob(self, info: BlobInfo, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]: ...

    def count_sendfile(self, size: int) -> None: ...

    async def tags(self) -> list[str]: ...

    async def referrers(self, subject: Digest, artifact_type: str | None) -> list[Descriptor]: ...


class LocalRepository:
    """The local repository `name` of `store`, seen through the Repository protocol."""

    def __init__(self, store: Store, name: str):
        self.store, self.name = store, name

    async def get_manifest(self, reference: str, accept: Sequence[str]) -> StoredManifest:
        return await self.store.get_manifest(self.name, reference)

    async def stat_blob(self, d: Digest) -> BlobInfo:
        return await self.store.stat_blob(self.name, d)

    def local_path(self, info: BlobInfo) -> Path | None:
        return self.store.local_path(info)

    def read_blob(self, info: BlobInfo, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.store.read_blob(info, offset, length)

    def count_sendfile(self, size: int) -> None:
        pass

    async def tags(self) -> list[str]:
        return await self.store.tags(self.name)

    async def referrers(self, subject: Digest, artifact_type: str | None) -> list[Descriptor]:
        return await self.store.referrers(self.name, subject, artifact_type)
