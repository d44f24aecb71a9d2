"""image/oci.py: layer tars and archives depend only on content, never on file times, owners or creation order."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from image import oci

MTIME = 1_700_000_000


def _tree(root: Path, order: list[str], stamp: int) -> Path:
    for name in order:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {name}\n")
        os.utime(path, (stamp, stamp))
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    if not (root / "usr/bin/python").is_symlink():
        (root / "usr/bin/python").symlink_to("python3.11")
    (root / "var/lib/registry").mkdir(parents=True, exist_ok=True)
    return root


def _layer(root: Path, blobs: Path) -> oci.Layer:
    blobs.mkdir(parents=True, exist_ok=True)
    names = oci.walk(root, ["etc/a.conf", "usr/lib/x.so", "usr/bin/python", "var/lib/registry"])
    return oci.write_layer(root, names, MTIME, blobs, {"var/lib/registry": (65532, 65532)})


def test_same_content_same_digest_whatever_the_times_and_order(tmp_path: Path) -> None:
    """Two trees with the same files, written in another order at other times, give the same layer digest."""
    one = _tree(tmp_path / "one", ["etc/a.conf", "usr/lib/x.so"], 1)
    two = _tree(tmp_path / "two", ["usr/lib/x.so", "etc/a.conf"], 2_000_000_000)
    first, second = _layer(one, tmp_path / "b1"), _layer(two, tmp_path / "b2")
    assert first == second
    (two / "etc/a.conf").write_text("changed\n")
    assert _layer(two, tmp_path / "b3").descriptor.digest != first.descriptor.digest


def test_layer_entries_sorted_with_fixed_metadata(tmp_path: Path) -> None:
    """Entries are sorted, parents included, one mtime, uid/gid 0 with empty names except the given owners."""
    root = _tree(tmp_path / "t", ["usr/lib/x.so", "etc/a.conf"], 5)
    layer = _layer(root, tmp_path / "blobs")
    blob = (tmp_path / "blobs" / layer.descriptor.hex).read_bytes()
    assert blob[4:8] == b"\0\0\0\0"  # gzip MTIME
    raw = gzip.decompress(blob)
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:2] == ["etc", "etc/a.conf"] and "usr/bin/python" in names
    assert {m.mtime for m in members} == {MTIME}
    owners = {m.name: (m.uid, m.gid, m.uname, m.gname) for m in members}
    assert owners.pop("var/lib/registry") == (65532, 65532, "", "")
    assert set(owners.values()) == {(0, 0, "", "")}
    link = next(m for m in members if m.name == "usr/bin/python")
    assert link.issym() and link.linkname == "python3.11"


def test_layout_and_archives(tmp_path: Path) -> None:
    """The OCI archive holds the layout; the docker-archive names the image and lists config and layers."""
    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    root = _tree(tmp_path / "t", ["etc/a.conf", "usr/lib/x.so"], 5)
    layer = _layer(root, blobs)
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}
    image = oci.finish_layout(layout, config, [layer], "1.0", "localhost/demo:1.0", {"a": "b"})
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.manifest.digest
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "localhost/demo:1.0"
    oci_tar, docker_tar = tmp_path / "i.oci.tar", tmp_path / "i.docker.tar"
    oci.write_oci_archive(image, oci_tar, MTIME)
    oci.write_docker_archive(image, docker_tar, MTIME)
    with tarfile.open(oci_tar) as tar:
        assert {"oci-layout", "index.json", f"blobs/sha256/{layer.descriptor.hex}"} <= set(tar.getnames())
    with tarfile.open(docker_tar) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert "index.json" not in tar.getnames()
    assert manifest == [{"Config": f"blobs/sha256/{image.config.hex}", "RepoTags": ["localhost/demo:1.0"],
                         "Layers": [f"blobs/sha256/{layer.descriptor.hex}"]}]
    again = tmp_path / "again.oci.tar"
    oci.write_oci_archive(image, again, MTIME)
    assert again.read_bytes() == oci_tar.read_bytes()
