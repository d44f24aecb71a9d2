"""Image references as Docker and containerd normalise them, and the names of Docker Hub.

    busybox                          -> docker.io / library/busybox : latest
    rancher/pause:3.6                -> docker.io / rancher/pause   : 3.6
    index.docker.io/library/nginx    -> docker.io / library/nginx   : latest
    ghcr.io/a/b@sha256:...           -> ghcr.io   / a/b             @ sha256:...

Docker Hub is one registry under several names: image references call it `docker.io`, its API answers at
`registry-1.docker.io` (and the legacy hosts below), and its one-component repository names live under
`library/`. Every layer that meets these names (the cache's routing, the registry client, the config, the K3s
tools) takes the rule from here.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCKER_HUB = "docker.io"
"""The registry name image references use for Docker Hub."""

DOCKER_HUB_HOST = "registry-1.docker.io"
"""The host that serves Docker Hub's registry API (containerd's default host for `docker.io`)."""

DOCKER_HUB_HOSTS = (DOCKER_HUB_HOST, "index.docker.io", "registry.hub.docker.com", DOCKER_HUB)
"""Hosts that are the registry image references call `docker.io`."""

_LEGACY_HUB = "index.docker.io"  # the only alias that image references themselves normalise to docker.io


def canonical_repository(registry: str, repository: str) -> str:
    """`repository` as `registry` names it: Docker Hub keeps one-component names under `library/`."""
    if registry == DOCKER_HUB and "/" not in repository:
        return f"library/{repository}"
    return repository


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way containerd's ParseDockerRef does."""

    registry: str
    repository: str
    tag: str
    digest: str

    def reference(self) -> str:
        """The digest when there is one, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        return out + (f"@{self.digest}" if self.digest else "")


def parse_image(image: str) -> ImageRef:
    """Normalise `busybox`, `rancher/pause:3.6`, `ghcr.io/a/b@sha256:…` to registry/repository/tag/digest;
    ValueError when no repository is left."""
    name, _, digest = image.partition("@")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry == _LEGACY_HUB:
        registry = DOCKER_HUB
    repository = canonical_repository(registry, repository)
    if not tag and not digest:
        tag = "latest"
    if not repository:
        raise ValueError(f"invalid image reference {image!r}")
    return ImageRef(registry, repository, tag, digest)
