"""Bundles: a layout packed into frames, read back by any zstd tar reader, verified, damaged and cut short."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path

import pytest
import zstandard

from k3sreg.errors import DigestInvalid, K3sregError
from k3sreg.images.bundle import BundleReader, pack, unpack
from k3sreg.images.layout import LayoutSource
from k3sreg.images.model import Image
from tests.peers.images import TestLayout, build_layout


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> TestLayout:
    return build_layout(tmp_path_factory.mktemp("layout"), layer_size=300_000)


def images_of(layout: TestLayout) -> list[Image]:
    source = LayoutSource(layout.root)
    found = source.images("docker.io/library/demo")
    return [i for i in found if i.tag in ("1", "1-multi")]


@pytest.fixture
def bundle(layout: TestLayout, tmp_path: Path) -> Path:
    out = tmp_path / "b.tar.zst"
    pack(images_of(layout), LayoutSource(layout.root).open_file, out)
    return out


def test_bundle_is_a_zstd_tar_of_an_oci_layout(bundle: Path, layout: TestLayout) -> None:
    """Plain zstd and tar read it: oci-layout, index.json with full names, every blob once, a checksum list."""
    with zstandard.ZstdDecompressor().stream_reader(bundle.open("rb"), read_across_frames=True) as z:
        data = z.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = [m.name for m in tar if m.isfile()]
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        sums = tar.extractfile("checksums.sha256").read().decode()  # type: ignore[union-attr]
    blobs = [n for n in names if n.startswith("blobs/")]
    assert names[:3] == ["oci-layout", "index.json", "checksums.sha256"]
    assert len(blobs) == len(set(blobs)) == len(sums.splitlines())
    refs = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert refs == {"docker.io/library/demo:1", "docker.io/library/demo:1-multi"}
    assert {m["annotations"]["io.containerd.image.name"] for m in index["manifests"]} == refs
    assert f"blobs/sha256/{layout.index.digest[7:]}" in blobs


def test_reader_finds_images_and_verifies_every_blob(bundle: Path, layout: TestLayout) -> None:
    """The frame index gives the images with the source's digests; every blob hashes right."""
    reader = BundleReader.open(bundle)
    assert reader is not None
    images = reader.images()
    assert {str(i.root.digest) for i in images} == {layout.single.digest, layout.index.digest}
    reader.check_complete(images)
    reader.verify({b.digest for i in images for b in i.root.all_blobs()})
    blob = next(images[0].root.all_blobs())

    async def read(offset: int) -> bytes:
        return b"".join([c async for c in reader.stream("r", blob, offset)])

    whole = asyncio.run(read(0))
    assert asyncio.run(read(1000)) == whole[1000:] and len(whole) == blob.size


def test_a_damaged_blob_fails_verification(bundle: Path) -> None:
    """One flipped byte inside a blob's frame is reported as a corrupted bundle."""
    reader = BundleReader.open(bundle)
    assert reader is not None
    biggest = max(reader.frames, key=lambda d: reader.frames[d].size)
    frame = reader.frames[biggest]
    data = bytearray(bundle.read_bytes())
    data[frame.offset + frame.length // 2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    with pytest.raises((DigestInvalid, K3sregError), match="corrupted"):
        BundleReader.open(bundle).verify([biggest])  # type: ignore[union-attr]


def test_a_truncated_bundle_is_refused_by_the_unpacker(bundle: Path, tmp_path: Path) -> None:
    """Cut in the middle, it has no frame index, and unpacking it says truncated."""
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    assert BundleReader.open(cut) is None
    with pytest.raises(K3sregError, match="truncated"):
        unpack(cut, tmp_path / "out")


def test_unpack_reads_a_bundle_without_its_frame_index(bundle: Path, tmp_path: Path, layout: TestLayout) -> None:
    """The same tar re-compressed by another tool is unpacked into a layout with every image."""
    with zstandard.ZstdDecompressor().stream_reader(bundle.open("rb"), read_across_frames=True) as z:
        plain = z.read()
    other = tmp_path / "other.tar.zst"
    other.write_bytes(zstandard.ZstdCompressor().compress(plain))
    assert BundleReader.open(other) is None
    unpack(other, tmp_path / "out")
    found = LayoutSource(tmp_path / "out").images()
    assert {str(i.root.digest) for i in found} == {layout.single.digest, layout.index.digest}
