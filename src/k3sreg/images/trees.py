"""Building the tree of manifests under an image from wherever manifests are read (a layout, a bundle).

An index's children are followed when the reader holds them; a child it lacks (a platform left out by a filter)
makes the index `complete=False`. A blob a held image manifest names must be there: the caller checks that.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from k3sreg.errors import K3sregError, UsageError
from k3sreg.images.model import CONTAINERD_NAME, REF_NAME, Image, Node, make_node
from k3sreg.images.platforms import Platform
from k3sreg.oci.digest import Digest, InvalidDigest

MAX_DEPTH = 8


def tree_from(read: Callable[[Digest], bytes | None], digest: Digest, media_type: str, where: str,
              depth: int = 0) -> Node:
    """The node of manifest `digest` and everything below it that `read` holds."""
    data = read(digest)
    if data is None:
        raise K3sregError(f"{where}: manifest {digest} is missing")
    node, children = make_node(data, media_type, digest, f"{where}: manifest {digest}")
    if depth > MAX_DEPTH:
        raise K3sregError(f"{where}: manifests nested deeper than {MAX_DEPTH} levels under {digest}")
    for child, platform in children:
        if read(child) is None:
            node.complete = False
            continue
        sub = tree_from(read, child, "", where, depth + 1)
        found = Platform.of(platform)
        sub.platform = str(found) if found else ""
        node.children.append(sub)
    return node


def filtered_index(node: Node) -> Node:
    """A new index listing only the children `node` holds (the platforms a filter kept), or `node` itself when
    it is complete. The new index has a new digest; its children keep theirs."""
    if node.complete or not node.is_index:
        return node
    doc = json.loads(node.data)
    kept = {str(child.digest) for child in node.children}
    doc["manifests"] = [entry for entry in doc.get("manifests", []) if entry.get("digest") in kept]
    data = json.dumps(doc, separators=(",", ":")).encode()
    return Node(Digest.of(data), data, node.media_type, [], node.children, True, node.platform, node.referrers)


def split_name(ref: str, default_name: str) -> tuple[str, str | None]:
    """(name, tag) of a full reference `registry/repo:tag`; a bare tag goes with `default_name`."""
    last = ref.rsplit("/", 1)[-1]
    if "/" in ref and ":" in last:
        return ref[: len(ref) - len(last)] + last.split(":", 1)[0], last.split(":", 1)[1]
    return default_name, ref or None


def images_of(index: bytes, read: Callable[[Digest], bytes | None], source: Any, where: str,
              default_name: str = "") -> list[Image]:
    """The images an index.json names, their trees read through `read`."""
    try:
        entries = json.loads(index).get("manifests", [])
    except (ValueError, AttributeError):
        raise K3sregError(f"{where}: index.json is not JSON; the layout or bundle is corrupted") from None
    out = []
    for entry in entries:
        annotations = entry.get("annotations") or {}
        ref = str(annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME) or "")
        try:
            digest = Digest.parse(str(entry.get("digest")))
        except InvalidDigest as exc:
            raise K3sregError(f"{where}: index.json: {exc}") from None
        if "@" in ref:
            name, tag = ref.split("@", 1)[0], None
        else:
            name, tag = split_name(ref, default_name)
        if not name:
            raise UsageError(f"{where}: index.json entry {digest} has no full image name "
                             f"({CONTAINERD_NAME}); it was not written by k3sreg images export")
        root = tree_from(read, digest, str(entry.get("mediaType") or ""), where)
        out.append(Image(name, tag, root, source))
    return out
