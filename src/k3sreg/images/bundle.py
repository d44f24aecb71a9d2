"""Bundles: one `.tar.zst` file holding an OCI image layout, to carry images across an air gap.

    frame 0        oci-layout, index.json, checksums.sha256, every manifest   (one zstd frame)
    frame 1..n     one tar member per blob, each in a zstd frame of its own
    frame n+1      the end-of-archive blocks
    skippable      JSON: where each blob's frame starts, its compressed length, its size, its header length
    skippable      16 bytes: "K3SREGB1" and the offset of the JSON frame

Any zstd reader skips the skippable frames, so `tar --zstd -xf bundle.tar.zst` (or `zstd -d | tar -x`) gives
the layout; `checksums.sha256` then checks with `sha256sum -c`. index.json names each image in full
(`org.opencontainers.image.ref.name` and `io.containerd.image.name` = `docker.io/library/nginx:1.27`).

Because each blob is a frame of its own whose place is known, an import reads blobs in parallel and from any
offset, with no temporary copy: it verifies every digest first (all blobs, several at once), then pushes.
Memory stays flat: everything moves in 1 MiB pieces. A bundle without the index (re-compressed by another
tool) is unpacked into a temporary layout next to it first, which needs its uncompressed size on that disk.
"""

from __future__ import annotations

import abc
import hashlib
import io
import json
import os
import struct
import tarfile
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import zstandard

from k3sreg.errors import DigestInvalid, K3sregError, UsageError
from k3sreg.images.layout import LAYOUT_VERSION, blob_path
from k3sreg.images.model import CHUNK, CONTAINERD_NAME, REF_NAME, Blob, Image, Node, stream_file
from k3sreg.images.trees import images_of
from k3sreg.localfiles import replacing
from k3sreg.oci import mediatypes as mt
from k3sreg.oci.digest import Digest, InvalidDigest

MARK = b"K3SREGB1"
_SKIP_INDEX, _SKIP_FOOTER = 0x184D2A5E, 0x184D2A5F
_FOOTER = struct.Struct("<II8sQ")
MAX_HEAD = 256 << 20
MTIME = 0


@dataclass(frozen=True)
class Frame:
    """Where a blob's tar member sits: compressed `offset` and `length`, the blob `size`, and the `header`
    bytes (tar headers) before the data once decompressed."""

    offset: int
    length: int
    size: int
    header: int


def _header(name: str, size: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = (0, 0o755, MTIME) if directory else (size, 0o644, MTIME)
    if directory:
        info.type = tarfile.DIRTYPE
    return info.tobuf(tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def index_document(images: Iterable[Image]) -> bytes:
    """index.json of a bundle: one entry per image, annotated with its full name."""
    entries = []
    for image in images:
        entry: dict[str, Any] = {"mediaType": image.root.media_type, "digest": str(image.root.digest),
                                 "size": len(image.root.data)}
        entry["annotations"] = {REF_NAME: image.reference, CONTAINERD_NAME: image.reference}
        entries.append(entry)
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}, indent=1).encode()


class _Counter(io.RawIOBase):
    """A write-through file that counts the bytes written (the compressed offset of each frame)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = self.out.write(b)
        self.count += n
        return n


def pack(images: list[Image], read_blob: Callable[[Blob], BinaryIO], out: Path, level: int = 3,
         threads: int = 0, progress: Callable[[int], Any] | None = None) -> int:
    """Write the bundle of `images` to `out` (through a temporary file, renamed when complete); its size.

    `read_blob` opens a blob (from the export's layout); `threads` 0 means one per CPU for compression."""
    nodes: dict[Digest, Node] = {}
    blobs: dict[Digest, Blob] = {}
    for image in images:
        for node in image.root.nodes():
            nodes.setdefault(node.digest, node)
            for blob in node.blobs:
                blobs.setdefault(blob.digest, blob)
    for d in nodes:
        blobs.pop(d, None)
    sums = "".join(f"{d.hex}  blobs/sha256/{d.hex}\n" for d in [*nodes, *blobs]).encode()
    head: list[tuple[str, bytes]] = [("oci-layout", LAYOUT_VERSION), ("index.json", index_document(images)),
                                     ("checksums.sha256", sums)]
    head += [(f"blobs/sha256/{d.hex}", n.data) for d, n in nodes.items()]
    compressor = zstandard.ZstdCompressor(level=level, threads=threads or (os.cpu_count() or 1),
                                          write_checksum=True)
    frames: dict[str, Frame] = {}
    with replacing(out) as raw:
        counter = _Counter(raw)
        writer = compressor.stream_writer(cast(BinaryIO, counter), closefd=False)
        for directory in ("blobs/", "blobs/sha256/"):
            writer.write(_header(directory, 0, directory=True))
        for name, data in head:
            writer.write(_header(name, len(data)) + data + _padding(len(data)))
        writer.flush(zstandard.FLUSH_FRAME)
        head_frame = [0, counter.count]
        for digest, blob in blobs.items():
            start = counter.count
            header = _header(f"blobs/sha256/{digest.hex}", blob.size)
            writer.write(header)
            copied = 0
            with read_blob(blob) as f:
                while chunk := f.read(CHUNK):
                    writer.write(chunk)
                    copied += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
            if copied != blob.size:
                raise K3sregError(f"blob {digest}: {copied} bytes read, {blob.size} expected")
            writer.write(_padding(blob.size))
            writer.flush(zstandard.FLUSH_FRAME)
            frames[str(digest)] = Frame(start, counter.count - start, blob.size, len(header))
        writer.write(b"\0" * (2 * tarfile.BLOCKSIZE))
        writer.flush(zstandard.FLUSH_FRAME)
        index = json.dumps({"version": 1, "head": head_frame,
                            "blobs": {d: [f.offset, f.length, f.size, f.header] for d, f in frames.items()}
                            }).encode()
        index_at = counter.count
        raw.write(struct.pack("<II", _SKIP_INDEX, len(index)) + index)
        raw.write(_FOOTER.pack(_SKIP_FOOTER, 16, MARK, index_at))
        return raw.tell()


class BundleReader:
    """A bundle opened for import: its images, the frames of its blobs, and parallel verification."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames: dict[Digest, Frame] = {}
        self.manifests: dict[Digest, bytes] = {}
        self.index: bytes = b""
        self.checksums: set[str] = set()
        try:
            self.size = path.stat().st_size
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror or exc}") from None

    @classmethod
    def open(cls, path: Path) -> BundleReader | None:
        """The reader of a bundle that has k3sreg's frame index; None when it has none (made otherwise)."""
        reader = cls(path)
        with path.open("rb") as f:
            if reader.size < _FOOTER.size:
                return None
            f.seek(reader.size - _FOOTER.size)
            magic, length, mark, index_at = _FOOTER.unpack(f.read(_FOOTER.size))
            if (magic, length, mark) != (_SKIP_FOOTER, 16, MARK) or index_at >= reader.size:
                return None
            f.seek(index_at)
            magic, length = struct.unpack("<II", f.read(8))
            if magic != _SKIP_INDEX or index_at + 8 + length > reader.size:
                return None
            try:
                doc = json.loads(f.read(length))
                head = doc["head"]
                for key, (offset, size, data, header) in doc["blobs"].items():
                    reader.frames[Digest.parse(key)] = Frame(offset, size, data, header)
            except (ValueError, KeyError, TypeError, InvalidDigest) as exc:
                raise K3sregError(f"{path}: the bundle's frame index is damaged ({exc}); the bundle is "
                                  "corrupted") from None
        reader._read_head(int(head[0]), int(head[1]))
        return reader

    def _read_head(self, offset: int, length: int) -> None:
        with self.path.open("rb") as f:
            f.seek(offset)
            try:
                data = zstandard.ZstdDecompressor().decompressobj().decompress(f.read(length))
            except zstandard.ZstdError as exc:
                raise K3sregError(f"{self.path}: the bundle's first frame does not decompress ({exc}); the "
                                  "bundle is corrupted") from None
        if len(data) > MAX_HEAD:
            raise K3sregError(f"{self.path}: the bundle's manifests take more than {MAX_HEAD} bytes")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                content = tar.extractfile(member)
                body = content.read() if content else b""
                self._member(member.name, body)
        if not self.index:
            raise K3sregError(f"{self.path}: the bundle has no index.json; it is not a k3sreg bundle")

    def _member(self, name: str, body: bytes) -> None:
        if name == "index.json":
            self.index = body
        elif name == "checksums.sha256":
            self.checksums = {line.split()[0] for line in body.decode(errors="replace").splitlines() if line}
        elif name.startswith("blobs/sha256/"):
            digest = Digest("sha256", name.rsplit("/", 1)[1])
            if hashlib.sha256(body).hexdigest() != digest.hex:
                raise DigestInvalid(f"{self.path}: manifest {digest} does not match its digest; the bundle is "
                                    "corrupted")
            self.manifests[digest] = body

    def images(self) -> list[Image]:
        """Every image index.json names, with its tree of manifests."""
        return images_of(self.index, self.manifests.get, self, str(self.path))

    def check_complete(self, images: list[Image]) -> None:
        """Every blob the images need is in the bundle, and listed in its checksums."""
        for image in images:
            for blob in image.root.all_blobs():
                if blob.digest not in self.frames:
                    raise K3sregError(f"{self.path}: blob {blob.digest} of {image.reference} is missing; the "
                                      "bundle is incomplete")
                if self.checksums and blob.digest.hex not in self.checksums:
                    raise K3sregError(f"{self.path}: blob {blob.digest} is not in checksums.sha256")

    def verify(self, digests: Iterable[Digest], workers: int = 0,
               progress: Callable[[int], Any] | None = None) -> None:
        """Decompress and hash every blob in `digests`, several at a time; DigestInvalid or K3sregError naming
        the first one that is damaged or cut short."""
        todo = sorted(set(digests), key=lambda d: -self.frames[d].size)
        with ThreadPoolExecutor(max_workers=workers or (os.cpu_count() or 1)) as pool:
            for problem in pool.map(lambda d: self._check(d, progress), todo):
                if problem:
                    raise problem

    def _check(self, digest: Digest, progress: Callable[[int], Any] | None) -> K3sregError | None:
        hasher = digest.hasher()
        total = 0
        try:
            with self.open_file(Blob(digest, self.frames[digest].size, "")) as f:
                while chunk := f.read(CHUNK):
                    hasher.update(chunk)
                    total += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except K3sregError as exc:
            return exc
        if total != self.frames[digest].size or hasher.hexdigest() != digest.hex:
            return DigestInvalid(f"{self.path}: blob {digest} does not match its digest; the bundle is corrupted")
        return None

    def open_file(self, blob: Blob) -> BinaryIO:
        frame = self.frames.get(blob.digest)
        if frame is None:
            raise K3sregError(f"{self.path}: blob {blob.digest} is not in the bundle")
        if frame.offset + frame.length > self.size:
            raise K3sregError(f"{self.path}: the bundle ends before blob {blob.digest}; it is truncated")
        return cast(BinaryIO, _FrameReader(self.path, frame))

    async def stream(self, repo: str, blob: Blob, offset: int = 0) -> AsyncIterator[bytes]:
        del repo
        async for chunk in stream_file(lambda: self.open_file(blob), offset):
            yield chunk


class _Bounded(io.RawIOBase):
    """A raw reader of at most `left` bytes, each read taken from `_raw`."""

    left: int

    @abc.abstractmethod
    def _raw(self, n: int) -> bytes:
        """Up to `n` bytes from the underlying stream."""

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if self.left == 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self._raw(n)
        self.left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _FrameReader(_Bounded):
    """The data of one blob frame: decompressed, its tar header skipped, exactly `size` bytes."""

    def __init__(self, path: Path, frame: Frame) -> None:
        self.file = path.open("rb")
        self.file.seek(frame.offset)
        self.reader = zstandard.ZstdDecompressor().stream_reader(cast(BinaryIO, _Slice(self.file, frame.length)),
                                                                 read_across_frames=False)
        self.left = frame.size
        self.frame = frame
        self._skip(frame.header)

    def _skip(self, n: int) -> None:
        while n:
            got = self._raw(min(n, CHUNK))
            n -= len(got)

    def _raw(self, n: int) -> bytes:
        try:
            data = self.reader.read(n)
        except zstandard.ZstdError as exc:
            raise K3sregError(f"a blob frame does not decompress ({exc}); the bundle is corrupted") from None
        if not data and n:
            raise K3sregError("a blob frame ends early; the bundle is corrupted or truncated")
        return bytes(data)

    def close(self) -> None:
        self.file.close()
        super().close()


class _Slice(_Bounded):
    """At most `length` bytes of `f` from where it stands."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self.f = f
        self.left = length

    def _raw(self, n: int) -> bytes:
        return self.f.read(n)


def unpack(path: Path, into: Path, progress: Callable[[int], Any] | None = None) -> None:
    """Extract a zstd-compressed layout tar into `into`, checking every blob against its name as it streams;
    K3sregError when it is truncated or damaged."""
    into.mkdir(parents=True, exist_ok=True)
    (into / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    try:
        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as z, \
                tarfile.open(fileobj=z, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.lstrip("./")
                source = tar.extractfile(member)
                if source is None:
                    continue
                if name in ("oci-layout", "index.json", "checksums.sha256"):
                    (into / name).write_bytes(source.read())
                    continue
                parts = name.split("/")
                if len(parts) != 3 or parts[0] != "blobs":
                    continue
                digest = Digest.parse(f"{parts[1]}:{parts[2]}")
                hasher = digest.hasher()
                target = blob_path(into, digest)
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    while chunk := source.read(CHUNK):
                        hasher.update(chunk)
                        out.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
                if hasher.hexdigest() != digest.hex:
                    raise DigestInvalid(f"{path}: blob {digest} does not match its digest; the bundle is "
                                        "corrupted")
    except (tarfile.TarError, zstandard.ZstdError, EOFError, InvalidDigest) as exc:
        raise K3sregError(f"{path}: the bundle is truncated or damaged ({exc}); nothing was pushed") from None
