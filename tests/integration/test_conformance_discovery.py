"""OCI Distribution v1.1 "content discovery" workflow against a running ``k3sreg serve``: tags, catalog, referrers.

Tag listing with ``n``/``last`` pagination and RFC 5988 ``Link`` headers (``n=0`` is an empty page without a
link), the catalog likewise, and the referrers API: descriptors carry ``artifactType`` (from the manifest, else
its config media type, never for an index without one) and the manifest's annotations, the ``artifactType``
filter answers ``OCI-Filters-Applied``, and an unknown subject is an empty index, never a 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.oci_client import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Document,
    PushedImage,
    RegistryClient,
    assert_error,
    connect,
    image_index,
    image_manifest,
    run_with_client,
    serve_k3sreg,
    sha256,
)
from tests.peers.registry import K3sregServer

TAG_REPO = "conformance/tags"
# Deliberately pushed out of order; lexical order is what the registry must answer.
TAGS = ["v2", "alpha", "v10", "beta", "1.0", "latest", "v1", "gamma"]
REF_REPO = "conformance/referrers"
SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"
CONFIG_TYPED = "application/vnd.example.config-typed.v1"


@dataclass
class Referrers:
    """The referrers module fixture: a subject and what refers to it."""

    subject: PushedImage
    sbom: Document
    signature: Document
    config_typed: Document
    index: Document
    orphan: Document
    ghost_subject: Document


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """One k3sreg for this module."""
    with serve_k3sreg(tmp_path_factory.mktemp("conformance-discovery")) as srv:
        yield srv


@pytest.fixture(scope="module")
def tagged(server: K3sregServer) -> list[str]:
    """``TAG_REPO`` with one manifest under every name in ``TAGS``; returns the tags in lexical order."""

    async def push(client: RegistryClient) -> list[str]:
        image = await client.push_image(TAG_REPO, TAGS[0])
        for tag in TAGS[1:]:
            assert (await client.put_manifest(TAG_REPO, tag, image.manifest)).status == 201
        return sorted(TAGS)

    return run_with_client(server.url, push)


@pytest.fixture(scope="module")
def referrers(server: K3sregServer) -> Referrers:
    """A subject image in ``REF_REPO`` and five referrers of various kinds (one pushed before its subject)."""

    async def push(client: RegistryClient) -> Referrers:
        empty = Blob(EMPTY_JSON, OCI_EMPTY)
        await client.push_blob(REF_REPO, empty)
        subject_config = Blob(
            b'{"os":"linux","architecture":"amd64","referrers":"subject"}', "application/vnd.oci.image.config.v1+json"
        )
        subject_layer = Blob(b"subject layer bytes")
        for blob in (subject_config, subject_layer):
            await client.push_blob(REF_REPO, blob)
        subject_doc = image_manifest(subject_config, [subject_layer])
        # Referrers may arrive before their subject: push this one first.
        sbom_layer = Blob(b'{"sbom":true}', "application/spdx+json")
        await client.push_blob(REF_REPO, sbom_layer)
        sbom = image_manifest(
            empty, [sbom_layer], subject=subject_doc, artifact_type=SBOM, annotations={"org.example.kind": "sbom"}
        )
        assert (await client.put_manifest(REF_REPO, sbom.digest, sbom)).status == 201
        assert (await client.put_manifest(REF_REPO, "subject", subject_doc)).status == 201
        subject = PushedImage(REF_REPO, "subject", subject_config, [subject_layer], subject_doc)
        sig_layer = Blob(b"signature", "application/vnd.example.signature.payload")
        await client.push_blob(REF_REPO, sig_layer)
        signature = image_manifest(
            empty,
            [sig_layer],
            subject=subject_doc,
            artifact_type=SIG,
            annotations={"org.example.kind": "signature", "org.example.signer": "ci"},
        )
        typed_config = Blob(b'{"typed":"by config"}', CONFIG_TYPED)
        await client.push_blob(REF_REPO, typed_config)
        config_typed = image_manifest(typed_config, [], subject=subject_doc, annotations={"org.example.kind": "cfg"})
        for doc in (signature, config_typed):
            assert (await client.put_manifest(REF_REPO, doc.digest, doc)).status == 201
        index = image_index([signature], subject=subject_doc, annotations={"org.example.kind": "index"})
        assert (await client.put_manifest(REF_REPO, index.digest, index)).status == 201
        ghost_subject = image_manifest(Blob(b'{"never":"pushed"}', "application/vnd.oci.image.config.v1+json"), [])
        orphan = image_manifest(
            empty, [], subject=ghost_subject, artifact_type=SBOM, annotations={"org.example.kind": "orphan"}
        )
        assert (await client.put_manifest(REF_REPO, orphan.digest, orphan)).status == 201
        return Referrers(subject, sbom, signature, config_typed, index, orphan, ghost_subject)

    return run_with_client(server.url, push)


@pytest.fixture
async def client(server: K3sregServer) -> AsyncIterator[RegistryClient]:
    """A client of the module's server."""
    async with connect(server.url) as c:
        yield c


async def test_tags_list_is_complete_and_lexical(client: RegistryClient, tagged: list[str]) -> None:
    """GET tags/list is 200 with the repository name and every tag, in lexical order."""
    reply = await client.request("GET", f"/v2/{TAG_REPO}/tags/list")
    assert reply.status == 200
    assert reply.headers["Content-Type"].split(";")[0] == "application/json"
    assert reply.json() == {"name": TAG_REPO, "tags": tagged}


async def test_tags_n_limits_and_links_to_the_rest(client: RegistryClient, tagged: list[str]) -> None:
    """``n`` returns the first n tags and a rel="next" Link; following the links yields every tag once, in order."""
    first = await client.request("GET", f"/v2/{TAG_REPO}/tags/list", params={"n": "3"})
    assert first.status == 200
    assert first.json()["tags"] == tagged[:3]
    seen: list[str] = list(first.json()["tags"])
    link, pages = first.next_link(), 1
    while link is not None:
        assert pages < len(tagged), "pagination does not end"
        page = await client.request("GET", link)
        assert page.status == 200
        seen += page.json()["tags"]
        link, pages = page.next_link(), pages + 1
    assert seen == tagged
    assert pages == 3


async def test_tags_last_starts_after_that_tag(client: RegistryClient, tagged: list[str]) -> None:
    """``n`` with ``last`` returns up to n tags strictly after ``last``."""
    reply = await client.request("GET", f"/v2/{TAG_REPO}/tags/list", params={"n": "2", "last": tagged[2]})
    assert reply.status == 200
    assert reply.json()["tags"] == tagged[3:5]


async def test_tags_last_without_n_returns_the_rest(client: RegistryClient, tagged: list[str]) -> None:
    """``last`` alone returns every tag after it and no Link."""
    reply = await client.request("GET", f"/v2/{TAG_REPO}/tags/list", params={"last": tagged[4]})
    assert reply.status == 200
    assert reply.json()["tags"] == tagged[5:]
    assert reply.next_link() is None


async def test_tags_last_need_not_be_an_existing_tag(client: RegistryClient, tagged: list[str]) -> None:
    """``last`` names a position in lexical order, so a value that is not a tag works too; past the end is empty."""
    between = await client.request("GET", f"/v2/{TAG_REPO}/tags/list", params={"last": "b0"})
    assert between.json()["tags"] == [t for t in tagged if t > "b0"]
    past = await client.request("GET", f"/v2/{TAG_REPO}/tags/list", params={"last": "zzz"})
    assert past.status == 200 and past.json()["tags"] == [] and past.next_link() is None


async def test_tags_n_zero_is_empty_without_link(client: RegistryClient, tagged: list[str]) -> None:
    """``n=0`` returns an empty list and no Link header (spec: MUST NOT)."""
    reply = await client.request("GET", f"/v2/{TAG_REPO}/tags/list", params={"n": "0"})
    assert reply.status == 200
    assert reply.json()["tags"] == []
    assert "Link" not in reply.headers


async def test_tags_last_page_has_no_link(client: RegistryClient, tagged: list[str]) -> None:
    """A page that reaches the end of the tags has no Link header."""
    reply = await client.request("GET", f"/v2/{TAG_REPO}/tags/list", params={"n": str(len(tagged) + 5)})
    assert reply.json()["tags"] == tagged
    assert reply.next_link() is None


async def test_tags_of_unknown_repository_is_name_unknown(client: RegistryClient) -> None:
    """tags/list of a repository that does not exist is 404 NAME_UNKNOWN."""
    assert_error(await client.request("GET", "/v2/conformance/no-such-repo/tags/list"), 404, "NAME_UNKNOWN")


async def test_catalog_lists_repositories_with_pagination(
    client: RegistryClient, tagged: list[str], referrers: Referrers
) -> None:
    """_catalog lists repositories in lexical order; ``n`` pages it with a rel="next" Link that reaches the end."""
    full = await client.request("GET", "/v2/_catalog")
    assert full.status == 200
    names = full.json()["repositories"]
    assert TAG_REPO in names and REF_REPO in names
    assert names == sorted(names)
    seen: list[str] = []
    link: str | None = "/v2/_catalog?n=1"
    while link is not None:
        page = await client.request("GET", link)
        assert page.status == 200 and len(page.json()["repositories"]) <= 1
        seen += page.json()["repositories"]
        link = page.next_link()
        assert len(seen) <= len(names)
    assert seen == names


def by_digest(reply_doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The referrers index's descriptors keyed by digest (no duplicates allowed)."""
    manifests = reply_doc["manifests"]
    digests = [m["digest"] for m in manifests]
    assert len(digests) == len(set(digests)), digests
    return {m["digest"]: m for m in manifests}


async def test_referrers_list_every_referrer(client: RegistryClient, referrers: Referrers) -> None:
    """Referrers are an OCI index of descriptors with size, type, artifactType (else config type) and annotations."""
    subject = referrers.subject.manifest.digest
    reply = await client.request("GET", f"/v2/{REF_REPO}/referrers/{subject}")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == OCI_INDEX
    doc = reply.json()
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == OCI_INDEX
    found = by_digest(doc)
    expected = {
        referrers.sbom.digest: (referrers.sbom, SBOM, {"org.example.kind": "sbom"}),
        referrers.signature.digest: (
            referrers.signature,
            SIG,
            {"org.example.kind": "signature", "org.example.signer": "ci"},
        ),
        referrers.config_typed.digest: (referrers.config_typed, CONFIG_TYPED, {"org.example.kind": "cfg"}),
        referrers.index.digest: (referrers.index, None, {"org.example.kind": "index"}),
    }
    assert set(found) == set(expected)
    for digest, (document, artifact_type, wanted) in expected.items():
        entry = found[digest]
        assert entry["mediaType"] == document.media_type
        assert entry["size"] == len(document.body)
        assert entry.get("artifactType") == artifact_type
        assert entry["annotations"] == wanted


async def test_referrers_filter_by_artifact_type(client: RegistryClient, referrers: Referrers) -> None:
    """``?artifactType=`` keeps only matching referrers and says so with ``OCI-Filters-Applied: artifactType``."""
    subject = referrers.subject.manifest.digest
    reply = await client.request("GET", f"/v2/{REF_REPO}/referrers/{subject}", params={"artifactType": SBOM})
    assert reply.status == 200
    assert reply.headers["OCI-Filters-Applied"] == "artifactType"
    assert list(by_digest(reply.json())) == [referrers.sbom.digest]
    by_config = await client.request(
        "GET", f"/v2/{REF_REPO}/referrers/{subject}", params={"artifactType": CONFIG_TYPED}
    )
    assert list(by_digest(by_config.json())) == [referrers.config_typed.digest]


async def test_referrers_filter_without_match_is_empty(client: RegistryClient, referrers: Referrers) -> None:
    """A filter that matches nothing is still 200 with an empty index and the OCI-Filters-Applied header."""
    subject = referrers.subject.manifest.digest
    reply = await client.request(
        "GET", f"/v2/{REF_REPO}/referrers/{subject}", params={"artifactType": "application/vnd.example.none"}
    )
    assert reply.status == 200
    assert reply.headers["OCI-Filters-Applied"] == "artifactType"
    assert reply.json()["manifests"] == []


async def test_referrers_without_filter_have_no_filter_header(client: RegistryClient, referrers: Referrers) -> None:
    """Without ``artifactType`` nothing is filtered and OCI-Filters-Applied is absent."""
    reply = await client.request("GET", f"/v2/{REF_REPO}/referrers/{referrers.subject.manifest.digest}")
    assert "OCI-Filters-Applied" not in reply.headers


async def test_referrers_of_unknown_digest_is_an_empty_index(client: RegistryClient, referrers: Referrers) -> None:
    """Referrers of a digest nothing refers to are 200 with an empty OCI index, never 404."""
    reply = await client.request("GET", f"/v2/{REF_REPO}/referrers/{sha256(b'hello world')}")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == OCI_INDEX
    assert reply.json()["manifests"] == []


async def test_referrers_of_missing_subject_are_listed(client: RegistryClient, referrers: Referrers) -> None:
    """A referrer whose subject was never pushed is listed under that subject's digest."""
    reply = await client.request("GET", f"/v2/{REF_REPO}/referrers/{referrers.ghost_subject.digest}")
    assert reply.status == 200
    assert list(by_digest(reply.json())) == [referrers.orphan.digest]


async def test_referrers_are_per_repository(client: RegistryClient, referrers: Referrers) -> None:
    """Referrers pushed to one repository are not listed through another."""
    reply = await client.request("GET", f"/v2/{TAG_REPO}/referrers/{referrers.subject.manifest.digest}")
    assert reply.status == 200 and reply.json()["manifests"] == []


async def test_referrers_with_invalid_digest_is_400(client: RegistryClient, referrers: Referrers) -> None:
    """A referrers request whose digest is malformed is 400 with an OCI error body."""
    reply = await client.request("GET", f"/v2/{REF_REPO}/referrers/sha256:not-a-digest")
    assert_error(reply, 400, "DIGEST_INVALID", "MANIFEST_INVALID", "NAME_INVALID")


async def test_referrer_pushed_by_tag_is_listed(client: RegistryClient, referrers: Referrers) -> None:
    """A referrer pushed under a tag (not its digest) is listed under its subject too."""
    subject = await client.push_image(REF_REPO, "subject2")
    doc = image_manifest(
        Blob(EMPTY_JSON, OCI_EMPTY),
        [],
        subject=subject.manifest,
        artifact_type="application/vnd.example.t",
        annotations={"org.example.kind": "tagged"},
    )
    assert (await client.put_manifest(REF_REPO, "tagged-referrer", doc)).status == 201
    reply = await client.request("GET", f"/v2/{REF_REPO}/referrers/{subject.manifest.digest}")
    found = by_digest(reply.json())
    assert list(found) == [doc.digest]
    assert found[doc.digest]["mediaType"] == OCI_MANIFEST
