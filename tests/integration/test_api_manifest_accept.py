"""Content negotiation of manifests: a registry never answers with bytes of another digest than the one asked
for (issue 8 §1). Each test runs against docker-registry 2.8.2 too, which shows the expected behaviour.

Distribution swaps a manifest for another only by tag, and only a Docker manifest list for its linux/amd64
entry when the client accepts Docker image manifests but not lists; an OCI index is never swapped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pytest

from tests.peers import api
from tests.peers.registry import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
AMD64 = {"architecture": "amd64", "os": "linux"}
REPO = "accept/app"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(base: str, data: bytes, media_type: str) -> dict[str, object]:
    """Push the way every registry supports (POST, then PUT with the bytes); the blob's descriptor."""
    location = api.request("POST", f"{base}/v2/{REPO}/blobs/uploads/").headers["location"]
    done = api.request("PUT", f"{location}{'&' if '?' in location else '?'}digest={sha256(data)}", body=data)
    assert done.status == 201, done
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def put(base: str, ref: str, doc: dict[str, object]) -> tuple[str, bytes]:
    body = json.dumps(doc).encode()
    done = api.request("PUT", f"{base}/v2/{REPO}/manifests/{ref}", body=body,
                       headers={"Content-Type": str(doc["mediaType"])})
    assert done.status == 201, done
    return sha256(body), body


@dataclass(frozen=True)
class Pushed:
    """Digests of what `pushed` put in REPO: images, an OCI index (tag oci-index), a Docker list (docker-list)."""

    oci_image: str
    docker_image: str
    oci_index: str
    docker_list: str


@pytest.fixture(scope="module")
def pushed(registry: RegistryProcess) -> Pushed:
    """An OCI image, a Docker image, and an OCI index and a Docker list with a linux/amd64 entry each."""
    base = registry.url
    config = json.dumps(AMD64).encode()
    oci_layers = [push_blob(base, config, "application/vnd.oci.image.config.v1+json"),
                  push_blob(base, b"layer", "application/vnd.oci.image.layer.v1.tar")]
    docker_layers = [dict(oci_layers[0], mediaType="application/vnd.docker.container.image.v1+json"),
                     dict(oci_layers[1], mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")]
    oci, oci_body = put(base, "oci-image", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                            "config": oci_layers[0], "layers": oci_layers[1:]})
    docker, docker_body = put(base, "docker-image", {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                                                     "config": docker_layers[0], "layers": docker_layers[1:]})
    index, _ = put(base, "oci-index", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": oci, "size": len(oci_body), "platform": AMD64}]})
    listed, _ = put(base, "docker-list", {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": docker, "size": len(docker_body), "platform": AMD64}]})
    return Pushed(oci, docker, index, listed)


def get(registry: RegistryProcess, ref: str, accept: str) -> api.Response:
    return api.request("GET", f"{registry.url}/v2/{REPO}/manifests/{ref}", headers={"Accept": accept})


@pytest.mark.parametrize("accept", [OCI_MANIFEST, DOCKER_MANIFEST, f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"])
def test_oci_index_by_digest_with_image_only_accept(registry: RegistryProcess, pushed: Pushed, accept: str) -> None:
    """GET of an OCI index by digest accepting only image manifests (as oras-py asks) is 404 MANIFEST_UNKNOWN,
    never the linux/amd64 manifest under another digest."""
    reply = get(registry, pushed.oci_index, accept)
    assert reply.status == 404 and reply.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


@pytest.mark.parametrize("accept", [OCI_MANIFEST, DOCKER_MANIFEST, f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"])
def test_oci_index_by_tag_with_image_only_accept(registry: RegistryProcess, pushed: Pushed, accept: str) -> None:
    """By tag too, an OCI index is not swapped for one of its entries: 404 MANIFEST_UNKNOWN."""
    reply = get(registry, "oci-index", accept)
    assert reply.status == 404 and reply.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


@pytest.mark.parametrize("accept", [DOCKER_MANIFEST, f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"])
def test_docker_list_by_digest_is_the_list(registry: RegistryProcess, pushed: Pushed, accept: str) -> None:
    """A Docker manifest list asked for by digest is the list itself, whatever image types the client accepts."""
    reply = get(registry, pushed.docker_list, accept)
    assert reply.status == 200 and reply.headers["docker-content-digest"] == pushed.docker_list
    assert sha256(reply.body) == pushed.docker_list


def test_docker_list_by_tag_gives_old_clients_the_amd64_image(registry: RegistryProcess, pushed: Pushed) -> None:
    """By tag, a client that accepts Docker image manifests but not lists gets the linux/amd64 entry, by its own
    digest: the one swap Distribution makes."""
    reply = get(registry, "docker-list", DOCKER_MANIFEST)
    assert reply.status == 200 and reply.headers["docker-content-digest"] == pushed.docker_image
    assert sha256(reply.body) == pushed.docker_image


@pytest.mark.parametrize("accept", [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST, api.MANIFEST_ACCEPT])
def test_by_digest_the_stored_manifest_or_nothing(registry: RegistryProcess, pushed: Pushed, accept: str) -> None:
    """Whatever the Accept header, a manifest asked for by digest answers with those bytes, or 404."""
    for d in (pushed.oci_image, pushed.docker_image, pushed.oci_index, pushed.docker_list):
        reply = get(registry, d, accept)
        assert reply.status in (200, 404), (d, accept, reply.status)
        if reply.status == 200:
            assert reply.headers["docker-content-digest"] == d and sha256(reply.body) == d
