"""Client side of images: sync image lists into a registry or a layout, carry them across an air gap in one
bundle file, load them there, push archives from CI, list a registry.

    lists     image lists (k3sreg's YAML, hauler's Images, skopeo's sync YAML)
    resolve   list entries → images (tags, manifests, indexes, referrers) from source registries
    copy      the three-phase copy (blobs, manifests, tags) into a target: `remote` registries, `layout` dirs
    bundle    export (one zstd-compressed tar holding an OCI layout) and import (verify, then push)
    archives  what `images push` reads: OCI layouts, oci-archive and docker-archive tars
    tarball   deterministic tar writing: K3s's agent/images/ tarballs and k3sreg's own image archives
    listing   `images ls`

Uses client/, oci/ and config/ only: never the server or the storage.
"""
