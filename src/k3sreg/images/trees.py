"""Building the tree of manifests under an image from wherever manifests are read (a layout, a bundle).

An index's children are followed when the reader holds them; a child it lacks (a platform left out by a filter)
makes the index `complete=False`. A blob a held image manifest names must be there: the caller checks that.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from k3sreg.errors import K3sregError
from k3sreg.images.model import Node, make_node
from k3sreg.images.platforms import Platform
from k3sreg.oci.digest import Digest

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
