"""Every path k3sreg's storage uses: Docker Distribution's layout, so a `registry:2` volume is served as it is
(and back), plus k3sreg's extensions, which Distribution ignores. No other module builds a storage path.

    <root>/docker/registry/v2/
      blobs/<alg>/<hex[:2]>/<hex>/data                       the content, once per digest
      blobs/<alg>/<hex[:2]>/<hex>/size-<n>                   k3sreg's: an empty file naming the size the commit
                                                             verified (see BlobStore.stat_global)
      blobs/<alg>/<hex[:2]>/<hex>/used                       k3sreg's: an empty file; its mtime is when a write
                                                             last relied on the blob (see `guard`)
      repositories/<name>/
        _layers/<alg>/<hex>/link                             "sha256:..." : the blob belongs to <name>; its mtime
                                                             is the blob's last access in a cache repository
        _manifests/revisions/<alg>/<hex>/link                a manifest of <name>; mtime: its last access
        _manifests/tags/<tag>/current/link                   what <tag> points at now; in a cache repository its
                                                             mtime is when the upstream last confirmed the tag
        _manifests/tags/<tag>/index/<alg>/<hex>/link         every digest <tag> has pointed at
        _uploads/<uuid>/data                                 an upload in progress
        _uploads/<uuid>/startedat                            RFC 3339 start time (upload purging reads it)
        _uploads/<uuid>/lock                                 k3sreg's: locked by the request on the session
        _referrers/<alg>/<subject hex>/<alg>/<hex>/link      k3sreg's: manifests whose subject is <subject>
      _fills/                                                k3sreg's: pull-through fills in progress
        <hex>.lock                                           locked by the worker that leads the fill of <hex>
        <hex>.size                                           the blob's size, once the upstream has answered
        <hex>.partial                                        the bytes as they arrive
        <hex>.verified                                       the same file once every byte matched the digest,
                                                             until it is moved to blobs/.../data
        evict.lock                                           locked by the worker that runs eviction
      _gc/                                                   k3sreg's: garbage collection and scrub
        gc.lock, scrub.lock                                  locked by the worker that collects, or scrubs
        locks/<hex[:3]>                                      the blobs whose digests start so: held by a write
                                                             relying on one, or a sweep removing one (`guard`)
        clock                                                rewritten at the start of a run: its mtime is the
                                                             storage's own "now" (see `guard`)
        gc.json, scrub.json                                  the last run's report (`gc.Report`, `scrub.Report`)
        scrub.resume                                         where an interrupted background scrub goes on
      _quarantine/<alg>/<hex>/                               k3sreg's: corrupt blobs moved aside by scrub
        data                                                 the bytes, as they were found
        reason                                               one line: when and why
      _tmp/                                                  k3sreg's staging for atomic writes; directories
                                                             being deleted are moved here first
        health-<uuid>                                        the storage health check's write probe

Paths here are driver paths: '/'-separated, relative to the driver's root.
"""

from __future__ import annotations

from k3sreg.oci.digest import Digest

V2 = "docker/registry/v2"
BLOBS = f"{V2}/blobs"
REPOSITORIES = f"{V2}/repositories"
TMP = f"{V2}/_tmp"
FILLS = f"{V2}/_fills"
EVICT_LOCK = f"{FILLS}/evict.lock"
GC = f"{V2}/_gc"
GC_LOCK = f"{GC}/gc.lock"
SCRUB_LOCK = f"{GC}/scrub.lock"
GC_CLOCK = f"{GC}/clock"
GC_REPORT = f"{GC}/gc.json"
SCRUB_REPORT = f"{GC}/scrub.json"
SCRUB_RESUME = f"{GC}/scrub.resume"
GC_LOCKS = f"{GC}/locks"
GC_LOCKS_READY = f"{GC_LOCKS}/ready"
QUARANTINE = f"{V2}/_quarantine"

# The directories of a repository: the catalog lists the repositories that hold `_manifests`.
LAYERS = "_layers"
MANIFESTS = "_manifests"
UPLOADS = "_uploads"
SIZE_MARKER = "size-"
DATA, USED = "data", "used"


def child(directory: str, name: str) -> str:
    """The entry `name` of `directory`, as a listing of it names it."""
    return f"{directory}/{name}"


def tmp(name: str) -> str:
    return f"{TMP}/{name}"


def health_probe(token: str) -> str:
    return tmp(f"health-{token}")


def blob_dir(d: Digest) -> str:
    return f"{BLOBS}/{d.algorithm}/{d.hex[:2]}/{d.hex}"


def blob_data(d: Digest) -> str:
    return f"{blob_dir(d)}/{DATA}"


def blob_size_marker(d: Digest, size: int) -> str:
    return f"{blob_dir(d)}/{SIZE_MARKER}{size}"


def blob_used(d: Digest) -> str:
    return f"{blob_dir(d)}/{USED}"


def gc_stripe(d: Digest) -> str:
    return f"{GC_LOCKS}/{d.hex[:3]}"


def quarantine_dir(d: Digest) -> str:
    return f"{QUARANTINE}/{d.algorithm}/{d.hex}"


def repo(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layers(name: str) -> str:
    return f"{repo(name)}/{LAYERS}"


def layer_dir(name: str, d: Digest) -> str:
    return f"{layers(name)}/{d.algorithm}/{d.hex}"


def layer_link(name: str, d: Digest) -> str:
    return f"{layer_dir(name, d)}/link"


def revisions(name: str) -> str:
    return f"{repo(name)}/{MANIFESTS}/revisions"


def revision_dir(name: str, d: Digest) -> str:
    return f"{revisions(name)}/{d.algorithm}/{d.hex}"


def revision_link(name: str, d: Digest) -> str:
    return f"{revision_dir(name, d)}/link"


def tags(name: str) -> str:
    return f"{repo(name)}/{MANIFESTS}/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_dir(name: str, tag: str, d: Digest) -> str:
    return f"{tag_dir(name, tag)}/index/{d.algorithm}/{d.hex}"


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    return f"{tag_index_dir(name, tag, d)}/link"


def uploads(name: str) -> str:
    return f"{repo(name)}/{UPLOADS}"


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


def referrer_dir(name: str, subject: Digest, d: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{d.algorithm}/{d.hex}"


def referrer_link(name: str, subject: Digest, d: Digest) -> str:
    return f"{referrer_dir(name, subject, d)}/link"


def fill_lock(d: Digest) -> str:
    return f"{FILLS}/{d.hex}.lock"


def fill_size(d: Digest) -> str:
    return f"{FILLS}/{d.hex}.size"


def fill_partial(d: Digest) -> str:
    return f"{FILLS}/{d.hex}.partial"


def fill_verified(d: Digest) -> str:
    return f"{FILLS}/{d.hex}.verified"
