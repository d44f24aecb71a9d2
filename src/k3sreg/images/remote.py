"""Registries on either side of a copy: clients for the sources an image list names, and a registry target.

A source registry is reached as the list's `registries:` section says, else at `https://HOST` (Docker Hub at
registry-1.docker.io); loopback hosts speak plain HTTP, as containerd assumes, and any host does with
`--plain-http` (or `plain-http: true` for it in the list).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from typing import Any

from k3sreg.client import RegistryClient
from k3sreg.client.settings import registry_settings
from k3sreg.errors import BlobUnknown, ManifestUnknown, NameUnknown, Unavailable
from k3sreg.images.lists import Access
from k3sreg.images.model import Blob, Node, target_repository
from k3sreg.oci.digest import Digest
from k3sreg.oci.reference import DOCKER_HUB, DOCKER_HUB_HOST

MOUNTED, PRESENT, COPIED = "mounted", "present", "copied"


def is_loopback(host: str) -> bool:
    """Whether `host` (host[:port], IPv6 in brackets) is this machine: localhost or a loopback address."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
    name = name.strip("[]").split("]")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def registry_url(host: str, plain_http: bool = False) -> str:
    """The URL of registry `host`: https, or http on loopback or when asked (Docker Hub: its API host)."""
    if host == DOCKER_HUB:
        return f"https://{DOCKER_HUB_HOST}"
    scheme = "http" if plain_http or is_loopback(host) else "https"
    return f"{scheme}://{host}"


class Sources:
    """One client per source registry, made on first use and closed together."""

    def __init__(self, access: dict[str, Access], plain_http: bool = False, jobs: int = 8) -> None:
        self.access = access
        self.plain_http = plain_http
        self.clients: dict[str, RegistryClient] = {}

    def client(self, registry: str) -> RegistryClient:
        if registry not in self.clients:
            a = self.access.get(registry, Access())
            url = a.url or registry_url(registry, self.plain_http or a.plain_http)
            settings = registry_settings(url, name=registry, username=a.username, password=a.password, ca=a.ca,
                                         insecure=a.insecure, certificate=a.certificate, key=a.key)
            self.clients[registry] = RegistryClient(settings, role="source")
        return self.clients[registry]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


class RegistrySource:
    """Streams blobs of one source registry; a cut download goes on from where it broke off (a Range)."""

    def __init__(self, client: RegistryClient, attempts: int = 3) -> None:
        self.client = client
        self.attempts = attempts

    async def stream(self, repo: str, blob: Blob, offset: int = 0) -> AsyncIterator[bytes]:
        for attempt in range(self.attempts):
            try:
                async with self.client.open_blob(repo, blob.digest, offset) as body:
                    async for chunk in body:
                        offset += len(chunk)
                        yield chunk
                return
            except Unavailable:
                if attempt + 1 == self.attempts or offset >= blob.size:
                    raise


class RegistryTarget:
    """A registry to copy into: `scoped` keeps the source registry in repository names."""

    def __init__(self, client: RegistryClient, scoped: bool = False) -> None:
        self.client = client
        self.scoped = scoped
        self.display = f"{client.transport.display}"

    def repo_for(self, name: str) -> str:
        return target_repository(name, self.scoped)

    def ref_for(self, name: str, tag: str) -> str:
        return f"{self.display}/{self.repo_for(name)}:{tag}"

    async def tagged(self, repo: str, tag: str) -> Digest | None:
        try:
            return (await self.client.head_manifest(repo, tag)).digest
        except (ManifestUnknown, NameUnknown):
            return None

    async def has_manifest(self, repo: str, digest: Digest) -> bool:
        return await self.tagged(repo, str(digest)) == digest

    async def put_blob(self, repo: str, blob: Blob, chunks: Callable[[int], AsyncIterator[bytes]],
                       mount_from: str | None, progress: Callable[[int], Any]) -> str:
        pusher = self.client.pusher(repo)
        if await pusher.has_blob(blob.digest):
            return PRESENT
        location = await pusher.start_upload(blob.digest if mount_from else None, mount_from)
        if location is None:
            return MOUNTED

        async def counted() -> AsyncIterator[bytes]:
            async for chunk in chunks(0):
                progress(len(chunk))
                yield chunk

        await pusher.upload(location, blob.digest, blob.size, counted())
        return COPIED

    async def put_manifest(self, repo: str, reference: str, node: Node) -> None:
        await self.client.put_manifest(repo, reference, node.data, node.media_type)

    async def close(self) -> None:
        await self.client.close()


async def fetch_manifest(client: RegistryClient, repo: str, reference: str) -> tuple[bytes, str, Digest]:
    """GET a manifest (its digest checked); BlobUnknown/ManifestUnknown pass through."""
    got = await client.get_manifest(repo, reference)
    return got.data, got.media_type, got.digest


__all__ = ["COPIED", "MOUNTED", "PRESENT", "BlobUnknown", "RegistrySource", "RegistryTarget", "Sources"]
