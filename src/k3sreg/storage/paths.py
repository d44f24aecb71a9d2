"""Docker Distribution's on-disk layout, so a `registry:2` volume is served as it is, and back.

    <root>/docker/registry/v2/
      blobs/<alg>/<hex[:2]>/<hex>/data                       the content, once per digest
      blobs/<alg>/<hex[:2]>/<hex>/size-<n>                   k3sreg's extension: an empty file naming the size
                                                             the commit verified (Distribution ignores it)
      repositories/<name>/
        _layers/<alg>/<hex>/link                             "sha256:..." : the blob belongs to <name>
        _manifests/revisions/<alg>/<hex>/link                a manifest of <name>
        _manifests/tags/<tag>/current/link                   what <tag> points at now
        _manifests/tags/<tag>/index/<alg>/<hex>/link         every digest <tag> has pointed at
        _uploads/<uuid>/data                                 an upload in progress
        _uploads/<uuid>/startedat                            RFC 3339 start time (upload purging reads it)
        _uploads/<uuid>/lock                                 k3sreg's: flock'ed by the request on the session
        _referrers/<alg>/<subject hex>/<alg>/<hex>/link      k3sreg's extension: manifests whose subject is
                                                             <subject>; Distribution ignores the directory
      _tmp/                                                  k3sreg's staging for atomic writes

Paths here are driver paths: '/'-separated, relative to the driver's root.
"""

from __future__ import annotations

from k3sreg.oci.digest import Digest

V2 = "docker/registry/v2"
BLOBS = f"{V2}/blobs"
REPOSITORIES = f"{V2}/repositories"
TMP = f"{V2}/_tmp"


def blob_dir(d: Digest) -> str:
    return f"{BLOBS}/{d.algorithm}/{d.hex[:2]}/{d.hex}"


def blob_data(d: Digest) -> str:
    return f"{blob_dir(d)}/data"


SIZE_MARKER = "size-"


def blob_size_marker(d: Digest, size: int) -> str:
    return f"{blob_dir(d)}/{SIZE_MARKER}{size}"


def repo(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, d: Digest) -> str:
    return f"{repo(name)}/_layers/{d.algorithm}/{d.hex}/link"


def layer_dir(name: str, d: Digest) -> str:
    return f"{repo(name)}/_layers/{d.algorithm}/{d.hex}"


def revisions(name: str) -> str:
    return f"{repo(name)}/_manifests/revisions"


def revision_link(name: str, d: Digest) -> str:
    return f"{repo(name)}/_manifests/revisions/{d.algorithm}/{d.hex}/link"


def revision_dir(name: str, d: Digest) -> str:
    return f"{repo(name)}/_manifests/revisions/{d.algorithm}/{d.hex}"


def tags(name: str) -> str:
    return f"{repo(name)}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    return f"{tag_dir(name, tag)}/index/{d.algorithm}/{d.hex}/link"


def uploads(name: str) -> str:
    return f"{repo(name)}/_uploads"


def upload_dir(name: str, uuid: str) -> str:
    return f"{uploads(name)}/{uuid}"


def upload_data(name: str, uuid: str) -> str:
    return f"{upload_dir(name, uuid)}/data"


def upload_startedat(name: str, uuid: str) -> str:
    return f"{upload_dir(name, uuid)}/startedat"


def upload_lock(name: str, uuid: str) -> str:
    return f"{upload_dir(name, uuid)}/lock"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{repo(name)}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, d: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{d.algorithm}/{d.hex}/link"
