"""`k3sreg garbage-collect` beside docker-registry 2.8.2's own `garbage-collect`, on copies of one store.

The store is written through the API (by docker-registry itself: a registry:2 volume; or by k3sreg) and holds
a multi-arch index, a referrer of a tagged image, a layer three images share (one of them in another
repository, mounted), an untagged manifest, a tag moved to another image, a deleted tag, a manifest deleted by
digest, and a blob uploaded for a manifest never pushed. Both collectors then run on copies of it. Without
--delete-untagged they print the same lines and keep the same files. With it, k3sreg keeps on purpose what
2.8.2 deletes and so breaks: the children of a tagged index (distribution/distribution#3178) and the referrers
of a tagged image, each with the blobs only they need. Every remaining tag then pulls completely from k3sreg.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.oci_client import (
    OCI_CONFIG,
    Blob,
    Document,
    RegistryClient,
    filler,
    image_index,
    image_manifest,
    run_with_client,
)
from tests.peers.registry import DOCKER_REGISTRY_BIN, K3SREG_BIN, DockerRegistry, K3sregServer, RegistryProcess
from tests.peers.skopeo import Skopeo, ToolError

V2 = Path("docker/registry/v2")


@dataclass
class Written:
    """What the scenario pushed: the manifests 2.8.2's --delete-untagged removes but k3sreg keeps, with the
    blobs only they need, and the tags left."""

    kept_on_purpose: set[str] = field(default_factory=set)
    revisions_kept_on_purpose: set[str] = field(default_factory=set)
    untagged: set[str] = field(default_factory=set)
    tags: list[str] = field(default_factory=list)


def _config(seed: str) -> Blob:
    return Blob(json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode(), OCI_CONFIG)


async def _image(c: RegistryClient, repo: str, seed: str, layers: list[Blob], **extra: object) -> Document:
    config = _config(seed)
    for blob in [config, *layers]:
        if (await c.request("HEAD", f"/v2/{repo}/blobs/{blob.digest}")).status != 200:
            await c.push_blob(repo, blob)
    return image_manifest(config, layers, **extra)  # type: ignore[arg-type]


async def _put(c: RegistryClient, repo: str, ref: str, doc: Document) -> None:
    reply = await c.put_manifest(repo, ref, doc)
    assert reply.status == 201, (reply.status, reply.body[:300])


def fill(registry: RegistryProcess) -> Written:
    """Write the scenario through `registry`'s API (plus one tag deletion on disk for docker-registry, whose API
    cannot delete a tag)."""
    out = Written()
    shared = Blob(filler("shared", 3000))

    async def work(c: RegistryClient) -> None:
        a = await _image(c, "multi", "a", [shared, Blob(filler("a1", 900))])
        b = await _image(c, "multi", "b", [Blob(filler("b1", 800))])
        for child in (a, b):
            await _put(c, "multi", child.digest, child)
        await _put(c, "multi", "latest", image_index([a, b]))
        # 2.8.2 keeps the children's bytes (the index names them) but not their revisions or their own blobs.
        out.kept_on_purpose.update({_config("a").digest, _config("b").digest, Blob(filler("a1", 900)).digest,
                                    Blob(filler("b1", 800)).digest})
        out.revisions_kept_on_purpose.update({f"multi@{a.digest}", f"multi@{b.digest}"})
        simple = await _image(c, "simple", "s", [shared])
        await _put(c, "simple", "1", simple)
        sig_layer = Blob(filler("signature", 300))
        sig = await _image(c, "simple", "sig", [sig_layer], subject=simple)
        await _put(c, "simple", sig.digest, sig)
        out.kept_on_purpose.update({sig.digest, sig_layer.digest, _config("sig").digest})
        out.revisions_kept_on_purpose.add(f"simple@{sig.digest}")
        untagged = await _image(c, "simple", "u", [Blob(filler("u1", 700))])
        await _put(c, "simple", untagged.digest, untagged)
        out.untagged.add(f"simple@{untagged.digest}")
        await c.push_blob("simple", Blob(filler("orphan upload", 500)))
        mount = await c.request("POST", f"/v2/mounted/blobs/uploads/?mount={shared.digest}&from=simple",
                                body=b"", headers={"Content-Length": "0"})
        assert mount.status == 201, mount.status
        await _put(c, "mounted", "1", await _image(c, "mounted", "m", [shared]))
        old = await _image(c, "moved", "v-old", [Blob(filler("old", 600))])
        await _put(c, "moved", "v", old)
        await _put(c, "moved", "v", await _image(c, "moved", "v-new", [Blob(filler("new", 600))]))
        gone = await _image(c, "gone", "d", [shared, Blob(filler("d1", 400))])
        await _put(c, "gone", "old", gone)
        out.untagged.update({f"moved@{old.digest}", f"gone@{gone.digest}"})
        by_digest = await _image(c, "bydigest", "x", [Blob(filler("x1", 400))])
        await _put(c, "bydigest", "1", by_digest)
        await _put(c, "bydigest", "2", await _image(c, "bydigest", "y", [Blob(filler("y1", 400))]))
        assert (await c.request("DELETE", f"/v2/bydigest/manifests/{by_digest.digest}")).status == 202
        if registry.impl == "k3sreg":
            assert (await c.request("DELETE", "/v2/gone/manifests/old")).status == 202
        out.tags[:] = ["multi:latest", "simple:1", "mounted:1", "moved:v", "bydigest:2"]

    registry.start()
    try:
        run_with_client(registry.url, work)
    finally:
        registry.stop()
    if registry.impl == "docker-registry":
        shutil.rmtree(registry.root / V2 / "repositories/gone/_manifests/tags/old")
    return out


def collect(binary: str, root: Path, tmp: Path, *flags: str) -> list[str]:
    """Run `<binary> garbage-collect FLAGS config.yml` on `root`; its stdout lines."""
    config = tmp / f"gc-{root.name}.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")
    done = subprocess.run([binary, "garbage-collect", *flags, str(config)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def remaining(root: Path) -> tuple[set[str], set[str]]:
    """(blob digests with data, "repo@digest" of every manifest revision) left in the store."""
    blobs = {f"sha256:{p.parent.name}" for p in (root / V2 / "blobs").rglob("data")}
    revisions = set()
    for link in (root / V2 / "repositories").rglob("_manifests/revisions/sha256/*/link"):
        repo = link.parent.relative_to(root / V2 / "repositories").parts[:-4]
        revisions.add(f"{'/'.join(repo)}@sha256:{link.parent.name}")
    return blobs, revisions


@pytest.fixture(scope="module", params=["docker-registry", "k3sreg"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Written]:
    """The scenario's store, written by each registry in turn."""
    work = tmp_path_factory.mktemp(f"gc-compat-{request.param}")
    registry: RegistryProcess = (DockerRegistry if request.param == "docker-registry" else K3sregServer)(work / "srv")
    return registry.root, fill(registry)


def _copies(source: Path, tmp: Path) -> tuple[Path, Path]:
    theirs, ours = tmp / "docker-registry", tmp / "k3sreg"
    shutil.copytree(source, theirs, symlinks=True)
    shutil.copytree(source, ours, symlinks=True)
    return theirs, ours


def _pull_every_tag(root: Path, tags: list[str], tmp: Path) -> None:
    with K3sregServer(tmp / "serve", root=root) as server:
        for tag in tags:
            Skopeo().copy(f"docker://{server.host}/{tag}", f"dir:{tmp / tag.replace(':', '-')}", all=True)


@pytest.mark.parametrize("flags", [(), ("--dry-run",)])
def test_both_collectors_print_and_keep_the_same(store: tuple[Path, Written], flags: tuple[str, ...],
                                                 tmp_path: Path) -> None:
    """Without --delete-untagged, k3sreg prints 2.8.2's lines (blobs eligible in any order, as Go's map gives
    them) and leaves the same blobs and manifests; every tag still pulls."""
    source, written = store
    theirs, ours = _copies(source, tmp_path)
    expected = collect(DOCKER_REGISTRY_BIN, theirs, tmp_path, *flags)
    got = collect(str(K3SREG_BIN), ours, tmp_path, *flags)
    eligible = "blob eligible for deletion: "
    assert [line for line in got if not line.startswith(eligible)] == \
        [line for line in expected if not line.startswith(eligible)]
    assert sorted(line for line in got if line.startswith(eligible)) == \
        sorted(line for line in expected if line.startswith(eligible))
    assert any(line.startswith(eligible) for line in got)  # the scenario leaves garbage
    assert remaining(ours) == remaining(theirs)
    if not flags:
        _pull_every_tag(ours, written.tags, tmp_path)


def test_delete_untagged_differs_only_where_distribution_breaks_images(store: tuple[Path, Written],
                                                                       tmp_path: Path) -> None:
    """With --delete-untagged, k3sreg keeps exactly what 2.8.2 keeps, plus the children of the tagged index
    and the referrer of the tagged image with their own blobs. Every tag pulls from k3sreg's copy; the
    multi-arch tag no longer pulls from 2.8.2's."""
    source, written = store
    theirs, ours = _copies(source, tmp_path)
    collect(DOCKER_REGISTRY_BIN, theirs, tmp_path, "--delete-untagged")
    collect(str(K3SREG_BIN), ours, tmp_path, "--delete-untagged")
    (their_blobs, their_revisions), (our_blobs, our_revisions) = remaining(theirs), remaining(ours)
    assert our_blobs - their_blobs == written.kept_on_purpose and their_blobs <= our_blobs
    assert our_revisions - their_revisions == written.revisions_kept_on_purpose
    assert their_revisions <= our_revisions
    assert written.untagged <= remaining(source)[1] and not written.untagged & our_revisions
    _pull_every_tag(ours, written.tags, tmp_path)
    with DockerRegistry(tmp_path / "broken", root=theirs) as theirs_served, pytest.raises(ToolError):
        Skopeo().copy(f"docker://{theirs_served.host}/multi:latest", f"dir:{tmp_path / 'broken-pull'}", all=True)
