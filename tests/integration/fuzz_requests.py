"""Random registry API requests for the fuzz test: methods, paths under /v2/, queries, headers and bodies.

``RequestFuzzer(rng, known)`` draws ``FuzzRequest`` values from pools of well-formed, nearly well-formed and
hostile pieces (NUL bytes, ``..``, over-long names, deep JSON, descriptors of the wrong type), mixed with names,
digests and upload sessions that exist (``Known``), so that requests reach past the first check. Paths and
queries are returned already percent-encoded, exactly as they go on the wire.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST,
               "application/vnd.docker.distribution.manifest.v1+prettyjws", "application/vnd.oci.empty.v1+json"]
ZERO = "sha256:" + "0" * 64

BAD_NAMES = ["..", "a/../b", "a/./b", "Upper/case", "a//b", "-a", "a-", "_catalog", "a" * 256, "b" * 300 + "/c",
             "a%00b", "%00", "a%2Fb", "%2e%2e/x", "%2e%2e", "caf%C3%A9", "a%20b", "a%ff", "a/" * 60 + "a", "x" * 255,
             "a" * 128 + "/" + "b" * 127]
BAD_REFS = ["sha256:abc", "md5:" + "a" * 32, "sha256:" + "G" * 64, "sha512:" + "a" * 64, "a%00b", "%00", "..",
            ".", "x" * 129, "x" * 400, "-tag", "%2e%2e", "tag%2F..", "sha256:", ":", "a:b:c", "%ff", "caf%C3%A9",
            "sha256:" + "a" * 64 + "%00"]
BAD_UPLOAD_IDS = ["..", ".", "a%00b", "%00", "x" * 300, "a.b", "a=b", "%2e%2e", "-", "=", "a%2Fb", "%ff",
                  "caf%C3%A9", "a%20b"]
HOSTS = ["docker.io", "DOCKER.IO", "down.example", "registry.local", "unknown.example", "bad host", "a%00b",
         "a" * 300, "..", "[::1]:5000", "x:99999", "%2e%2e%2F", "-"]
NUMBERS = ["0", "1", "2", "-1", "1e3", "99999999999999999999999", "abc", "", "%00", " 5", "0x10", "3.5"]
ACCEPTS = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, "*/*", "text/html", "application/json", ",",
           ";;;", f"{OCI_MANIFEST};q=0.5, {DOCKER_MANIFEST}", f"{OCI_INDEX}, {DOCKER_LIST}", "\u00e9", "a/b/c"]
RANGES = ["bytes=0-3", "bytes=-5", "bytes=5-", "bytes=99999-", "junk", "bytes=0-1,3-4", "bytes=3-1", "bytes=-0",
          "bytes=0-99999999999999999999", "bytes=", "bytes=a-b"]
CONTENT_RANGES = ["0-0", "0-3", "5-1", "bytes=0-3", "bytes 0-3/4", "junk", "0-99999999999999999999", "-1-3", "4-7"]


@dataclass
class Known:
    """What exists on the server: repository names, digests of its blobs and manifests, upload session ids."""

    names: list[str]
    digests: list[str]
    tags: list[str]
    blobs: list[dict[str, Any]]   # descriptors of a config and a layer in names[0]
    images: list[dict[str, Any]]  # descriptors of image manifests in names[0]
    uploads: list[str] = field(default_factory=list)
    proxied: list[str] = field(default_factory=list)  # names that resolve to an upstream


@dataclass(frozen=True)
class FuzzRequest:
    """One request: method, encoded path with query, headers, body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes | None


# Values of the wrong type or shape for each field a manifest or a descriptor may have.
HOSTILE: dict[str, list[Any]] = {
    "platform": ["linux", 7, ["linux"], True, 1.5, {}, {"architecture": 1, "os": "linux"}, {"os": ["x"]},
                 {"architecture": "amd64", "os": "linux", "os.features": "x"},
                 {"architecture": "amd64", "features": [1]}],
    "annotations": [{"a": 1}, ["a"], "a", {"a": None}, {"a": {"b": "c"}}, 5],
    "artifactType": [1, ["a"], {"a": "b"}, True],
    "urls": ["http://x", [1], [None], {}],
    "size": [-1, "5", 1.5, None, True, 10**30, 2**63],
    "digest": [*BAD_REFS, None, 5, ZERO],
    "mediaType": [None, 5, "", ["x"], "application/x-unknown"],
    "data": [5, ["x"]],
    "schemaVersion": [1, "2", None, 3, 2.5, True],
    "config": [None, "x", [], {}],
    "layers": [None, "x", {}, [None], [1]],
    "manifests": ["x", None, [1, "a"], {}],
    "subject": ["x", 5, [], {}],
}


def manifest_body(rng: random.Random, known: Known) -> bytes:
    """A manifest or index over content the server holds: half of them with one field of a hostile value."""
    kind = rng.randrange(12)
    if kind == 0:
        depth = rng.choice([50, 1000, 100_000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        return (opener * depth + "1" + closer * rng.choice([depth, 0])).encode()
    if kind == 1:
        return rng.choice([b"", b"{", b"null", b"[]", b"1", b'"x"', b"\xff\xfe", b'{"schemaVersion": 2}',
                           b'{"schemaVersion": 2, "mediaType": 5}', b"{}" * 3, b'{"a": "\\ud800"}'])
    doc: dict[str, Any] = {"schemaVersion": 2}
    if kind < 6:
        media = rng.choice([OCI_INDEX, OCI_INDEX, DOCKER_LIST, None])
        platforms = [{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}, None]
        doc["manifests"] = []
        for image in rng.sample(known.images, rng.randrange(len(known.images) + 1)):
            platform = rng.choice(platforms)
            doc["manifests"].append(dict(image, platform=platform) if platform else dict(image))
    else:
        media = rng.choice([OCI_MANIFEST, OCI_MANIFEST, DOCKER_MANIFEST, None])
        doc["config"], doc["layers"] = dict(known.blobs[0]), [dict(b) for b in known.blobs[1:]]
    if media is not None:
        doc["mediaType"] = media
    if rng.random() < 0.2:
        doc["subject"] = dict(rng.choice(known.images))
    if rng.random() < 0.2:
        doc["annotations"] = {"org.example": "x"}
    if rng.random() < 0.5:
        _mutate(rng, doc)
    return json.dumps(doc).encode()


def _mutate(rng: random.Random, doc: dict[str, Any]) -> None:
    """Give one field of the document, or of one of its descriptors, a hostile value (or remove it)."""
    targets = [doc] + [d for d in [doc.get("config"), doc.get("subject"), *doc.get("layers", []),
                                   *doc.get("manifests", [])] if isinstance(d, dict)]
    target = rng.choice(targets)
    fields = [k for k in HOSTILE if (k in ("schemaVersion", "config", "layers", "manifests", "subject",
                                          "mediaType", "annotations", "artifactType")) == (target is doc)]
    field_name = rng.choice([*fields, "annotations", "artifactType"])
    if rng.random() < 0.1:
        target.pop(field_name, None)
    else:
        target[field_name] = rng.choice(HOSTILE[field_name])


class RequestFuzzer:
    """Draws random requests; the same seed gives the same sequence."""

    def __init__(self, rng: random.Random, known: Known) -> None:
        self.rng, self.known = rng, known

    def pick(self, good: list[str], bad: list[str], p_bad: float = 0.3) -> str:
        return self.rng.choice(bad) if (self.rng.random() < p_bad or not good) else self.rng.choice(good)

    def name(self) -> str:
        if self.rng.random() < 0.5:
            return self.known.names[0]  # the repository that holds content, so that requests get far
        return self.pick([*self.known.names, *self.known.proxied, "fuzz/new" + str(self.rng.randrange(5))],
                         BAD_NAMES, 0.15)

    def digest(self) -> str:
        if self.rng.random() < 0.4:
            return str(self.rng.choice(self.known.blobs)["digest"])
        return self.pick([*self.known.digests, ZERO, "sha512:" + "0" * 128], BAD_REFS, 0.1)

    def reference(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice([*self.known.tags, "new" + str(self.rng.randrange(5))])
        return self.pick(self.known.tags + self.known.digests + ["latest", "nope"], BAD_REFS, 0.1)

    def upload_id(self) -> str:
        return self.pick([*self.known.uploads, str(uuid.UUID(int=self.rng.getrandbits(128), version=4))],
                         BAD_UPLOAD_IDS, 0.15)

    def path(self) -> tuple[str, list[str]]:
        """A path, and the methods that resource answers (a request uses another one now and then)."""
        rng = self.rng
        kind = rng.randrange(14)
        if kind == 0:
            return rng.choice(["/v2/", "/v2", "/v2/_catalog", "/", "/nope", "/debug/health", "/metrics", "/v2/x",
                               "/v2//", "/v2/_catalog/x", "/%00", "/v2/%2e%2e/%2e%2e/etc/passwd", "/v3/"]), ["GET"]
        name = self.name()
        if kind <= 4:
            return f"/v2/{name}/manifests/{self.reference()}", ["GET", "HEAD", "PUT", "PUT", "DELETE"]
        if kind <= 7:
            return f"/v2/{name}/blobs/{self.digest()}", ["GET", "GET", "HEAD", "DELETE"]
        if kind <= 10:
            session = self.upload_id() if rng.random() < 0.6 else ""
            return f"/v2/{name}/blobs/uploads/{session}", ["POST", "PATCH", "PUT", "GET", "DELETE"]
        if kind == 11:
            return f"/v2/{name}/tags/list", ["GET"]
        if kind == 12:
            return f"/v2/{name}/referrers/{self.digest()}", ["GET"]
        return f"/v2/{name}/" + rng.choice(["blobs", "manifests", "tags", "blobs/uploads/a/b", "x/y", ""]), ["GET"]

    def query(self) -> str:
        rng = self.rng
        params: list[str] = []
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
            key = rng.choice(["digest", "mount", "from", "ns", "n", "last", "artifactType", "_state", "junk",
                              "digest", "ns"])
            if key in ("digest", "mount"):
                value = self.digest()
            elif key in ("from",):
                value = self.pick(self.known.names, [*BAD_NAMES, "../../../../../canary"], 0.5)
            elif key == "ns":
                value = rng.choice(HOSTS)
            elif key == "n":
                value = rng.choice(NUMBERS)
            elif key == "last":
                value = self.pick(self.known.tags + self.known.names, BAD_NAMES + BAD_REFS, 0.5)
            else:
                value = rng.choice(["x", "%00", "a" * 300, "application/vnd.x", ""])
            params.append(f"{key}={value}")
        return ("?" + "&".join(params)) if params else ""

    def headers(self) -> dict[str, str]:
        rng = self.rng
        out: dict[str, str] = {}
        if rng.random() < 0.6:
            out["Accept"] = ", ".join(rng.sample(ACCEPTS, rng.choice([1, 1, 2, 3])))
        if rng.random() < 0.3:
            out["Content-Type"] = rng.choice([*MEDIA_TYPES, "application/octet-stream", "text/plain", ";", ""])
        if rng.random() < 0.15:
            out["Range"] = rng.choice(RANGES)
        if rng.random() < 0.15:
            out["Content-Range"] = rng.choice(CONTENT_RANGES)
        if rng.random() < 0.05:
            out[rng.choice(["If-None-Match", "X-Forwarded-Proto", "X-Forwarded-Host"])] = rng.choice(
                ["*", '"x"', "https", "a,b", "", "h:1"])
        return out

    def body(self, method: str, path: str) -> bytes | None:
        rng = self.rng
        if method not in ("PUT", "POST", "PATCH") and rng.random() < 0.9:
            return None
        if method == "PUT" and "/manifests/" in path and rng.random() < 0.85:
            return manifest_body(rng, self.known)
        choice = rng.randrange(4)
        if choice == 0:
            return None
        if choice == 1:
            return rng.randbytes(rng.choice([0, 1, 5, 100, 5000]))
        return manifest_body(rng, self.known)

    def request(self) -> FuzzRequest:
        path, methods = self.path()
        if self.rng.random() < 0.15:
            methods = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]
        method = self.rng.choice(methods)
        target = (path + self.query()).replace(" ", "%20")
        return FuzzRequest(method, target, self.headers(), self.body(method, path))
