"""Image lists: what `k3sreg images sync | export` copies. Three formats are read as they are:

k3sreg's own (README "Image lists"):

    registries:                      # optional: how to reach the registries the images name
      docker.io: {url: https://mirror.example, username: me, password-env: HUB_TOKEN}
    platforms: [linux/amd64, linux/arm64]     # default for every image: all platforms
    referrers: false                          # also copy signatures, SBOMs (OCI referrers)
    images:
      - docker.io/library/nginx:1.27          # a tag; `@sha256:...` for a digest
      - name: quay.io/coreos/etcd
        tags: [v3.5.17]                       # and/or:
        tag-regex: '^v3\\.5\\.\\d+$'          # every tag matching (listed from the registry)
        semver: '>=3.5.10 <3.6'               # every tag whose version is in the range
        platforms: [linux/arm64]
        referrers: true

hauler's `Images` documents (`apiVersion: content.hauler.cattle.io/v1` or `v1alpha1`, `kind: Images`,
`spec.images[].name` and `.platform`, the `hauler.dev/platform` and `hauler.dev/registry` annotations; other
kinds are skipped with a warning), and skopeo's sync YAML (`REGISTRY: {images: {repo: [tags]},
images-by-tag-regex: {repo: regex}, images-by-semver: {repo: range}, credentials, tls-verify, cert-dir}`).

Every problem is reported at once, each as `FILE:LINE:COL: key path: what is wrong`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k3sreg.errors import ConfigError
from k3sreg.images.platforms import Platform
from k3sreg.images.semver import SemverRange
from k3sreg.oci.digest import Digest, InvalidDigest
from k3sreg.oci.reference import parse_image
from k3sreg.problems import Loc, key_path, nearest, position, show_value, yaml_positions

HAULER_GROUP = "content.hauler.cattle.io"
_TOP_KEYS = ("registries", "platforms", "referrers", "images")
_ENTRY_KEYS = ("name", "tags", "digests", "tag-regex", "semver", "platforms", "referrers")
_ACCESS_KEYS = ("url", "username", "password", "password-env", "ca", "insecure", "plain-http", "certificate", "key")
_SKOPEO_KEYS = ("images", "images-by-tag-regex", "images-by-semver", "credentials", "tls-verify", "cert-dir")
_HAULER_IMAGE_KEYS = ("name", "platform", "key", "rewrite", "use-tlog-verify", "certificate-identity",
                      "certificate-identity-regexp", "certificate-oidc-issuer", "certificate-oidc-issuer-regexp",
                      "certificate-github-workflow-repository")


@dataclass(frozen=True)
class Access:
    """How to reach one source registry; every field optional (None/empty: the defaults)."""

    url: str | None = None
    username: str = ""
    password: str = ""
    ca: str | None = None
    insecure: bool = False
    plain_http: bool = False
    certificate: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Entry:
    """One line of a list: a repository and what to take from it. Tags and digests are taken as named; the
    registry's tag list is read only for `tag_regex`, `semver` or `all_tags`."""

    registry: str
    repository: str
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    tag_regex: re.Pattern[str] | None = None
    semver: SemverRange | None = None
    all_tags: bool = False
    platforms: tuple[Platform, ...] | None = None
    referrers: bool = False
    where: str = ""
    pinned: bool = False  # `name:tag@digest`: the tag is given the digest, never looked up

    @property
    def lists_tags(self) -> bool:
        """Whether the tags come (also) from the registry's tag list."""
        return self.all_tags or self.tag_regex is not None or self.semver is not None

    def wants(self, tag: str) -> bool:
        """Whether a listed tag is selected by the filters."""
        if self.all_tags:
            return True
        if self.tag_regex is not None and not self.tag_regex.search(tag):
            return False
        return self.semver is None or self.semver.matches(tag)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"


@dataclass
class ImageList:
    """A parsed list: its entries in order, the access settings per registry, and warnings to show."""

    entries: list[Entry] = field(default_factory=list)
    access: dict[str, Access] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class _Reader:
    """Collects entries and problems for one file; `at(loc)` gives the `FILE:LINE:COL` of a key path."""

    def __init__(self, path: str, positions: dict[Loc, tuple[int, int]], prefix: Loc = ()) -> None:
        self.path = path
        self.positions = positions
        self.prefix = prefix
        self.problems: list[str] = []
        self.out = ImageList()

    def at(self, loc: Loc) -> str:
        found = position(self.positions, (*self.prefix, *loc))
        return f"{self.path}:{found[0]}:{found[1]}" if found else self.path

    def problem(self, loc: Loc, message: str) -> None:
        path = key_path(loc)
        self.problems.append(f"{self.at(loc)}: {path + ': ' if path else ''}{message}")

    def keys(self, doc: dict[str, Any], known: tuple[str, ...], loc: Loc) -> None:
        for key in doc:
            if str(key) not in known:
                guess = nearest(str(key), known)
                hint = f"did you mean '{guess}'?" if guess else f"valid keys here: {', '.join(known)}"
                self.problem((*loc, str(key)), f"unknown key; {hint}")

    def strings(self, value: Any, loc: Loc, what: str) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
            self.problem(loc, f"expected a list of {what}, got {show_value(value)}")
            return []
        return [str(v) for v in value]

    def flag(self, value: Any, loc: Loc) -> bool:
        if not isinstance(value, bool):
            self.problem(loc, f"expected true or false, got {show_value(value)}")
            return False
        return value

    def platforms(self, value: Any, loc: Loc) -> tuple[Platform, ...] | None:
        if value is None:
            return None
        found = []
        for i, text in enumerate(self.strings(value, loc, "platforms such as 'linux/arm64'")):
            try:
                found.append(Platform.parse(text))
            except ValueError as exc:
                self.problem((*loc, i) if isinstance(value, list) else loc, str(exc))
        return tuple(found)

    def reference(self, text: Any, loc: Loc, default_registry: str = "") -> tuple[str, str, str, str] | None:
        """(registry, repository, tag, digest) of an image reference, or None after reporting it."""
        if not isinstance(text, str) or not text.strip():
            self.problem(loc, f"expected an image reference such as 'docker.io/library/nginx:1.27', got "
                              f"{show_value(text)}")
            return None
        text = text.strip()
        explicit = "/" in text and ("." in text.split("/")[0] or ":" in text.split("/")[0]
                                     or text.split("/")[0] == "localhost")
        if default_registry and not explicit:
            text = f"{default_registry}/{text}"
        try:
            ref = parse_image(text)
            if ref.digest:
                Digest.parse(ref.digest)
        except (ValueError, InvalidDigest) as exc:
            self.problem(loc, f"{exc}; write it as REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]")
            return None
        if not re.fullmatch(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
                            ref.repository):
            self.problem(loc, f"invalid repository name {ref.repository!r} (lower-case letters, digits, "
                              "separators . _ - and /)")
            return None
        tag = ref.tag if ":" in text.split("@")[0].rsplit("/", 1)[-1] else ""
        return ref.registry, ref.repository, tag, ref.digest

    def add(self, registry: str, repository: str, loc: Loc, *, tags: Sequence[str] = (),
            digests: Sequence[str] = (),
            regex: Any = None, semver: Any = None, all_tags: bool = False,
            platforms: tuple[Platform, ...] | None = None, referrers: bool = False, pinned: bool = False) -> None:
        pattern = rng = None
        if regex is not None:
            try:
                pattern = re.compile(str(regex))
            except re.error as exc:
                self.problem((*loc, "tag-regex") if loc else loc, f"invalid regular expression: {exc}")
                return
        if semver is not None:
            try:
                rng = SemverRange(str(semver))
            except ValueError as exc:
                self.problem(loc, str(exc))
                return
        real_tags: list[str] = []
        real_digests = list(digests)
        for tag in tags:
            (real_digests if ":" in tag else real_tags).append(tag)
        for d in real_digests:
            try:
                Digest.parse(d)
            except InvalidDigest as exc:
                self.problem(loc, str(exc))
                return
        if not (real_tags or real_digests or pattern or rng or all_tags):
            real_tags = ["latest"]
        if pinned and (len(real_tags) != 1 or len(real_digests) != 1):
            pinned = False
        self.out.entries.append(Entry(registry, repository, tuple(real_tags), tuple(real_digests), pattern, rng,
                                      all_tags, platforms, referrers, self.at(loc), pinned))


def load_list(path: Path) -> ImageList:
    """Read an image list file in any of the three formats; ConfigError listing every problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the image list: {exc.strerror or exc}"]) from None
    return parse_list(text, str(path))


def parse_list(text: str, name: str = "images.yaml") -> ImageList:
    """Parse the text of an image list (see the module docstring); ConfigError listing every problem."""
    try:
        nodes = list(yaml.compose_all(text))
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ConfigError([f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    pairs = [(d, n) for d, n in zip(docs, nodes, strict=True) if d is not None]
    if not pairs:
        raise ConfigError([f"{name}: the image list is empty; list images under 'images:'"])
    if any(isinstance(d, dict) and str(d.get("apiVersion", "")).startswith(HAULER_GROUP) for d, _ in pairs):
        return _finish(_hauler(pairs, name))
    doc, node = pairs[0]
    if len(pairs) > 1:
        raise ConfigError([f"{name}: more than one YAML document; only hauler manifests come in several"])
    reader = _Reader(name, yaml_positions(node))
    if isinstance(doc, dict) and "images" not in doc and doc and all(isinstance(v, dict) for v in doc.values()):
        _skopeo(reader, doc)
    else:
        _own(reader, doc)
    return _finish(reader)


def _finish(reader: _Reader) -> ImageList:
    if reader.problems:
        raise ConfigError(reader.problems)
    if not reader.out.entries:
        raise ConfigError([f"{reader.path}: the list names no image"])
    return reader.out


def _own(r: _Reader, doc: Any) -> None:
    if isinstance(doc, list):
        doc = {"images": doc}
    if not isinstance(doc, dict):
        r.problem((), f"expected a mapping with 'images:' (or a list of image references), got {show_value(doc)}")
        return
    r.keys(doc, _TOP_KEYS, ())
    default_platforms = r.platforms(doc.get("platforms"), ("platforms",))
    default_referrers = r.flag(doc["referrers"], ("referrers",)) if "referrers" in doc else False
    registries = doc.get("registries") or {}
    if not isinstance(registries, dict):
        r.problem(("registries",), f"expected a mapping of registry names, got {show_value(registries)}")
        registries = {}
    for host, settings in registries.items():
        r.out.access[str(host).lower()] = _access(r, settings, ("registries", str(host)))
    images = doc.get("images")
    if not isinstance(images, list):
        r.problem(("images",), f"expected a list of images, got {show_value(images)}")
        return
    for i, item in enumerate(images):
        loc: Loc = ("images", i)
        if isinstance(item, str):
            ref = r.reference(item, loc)
            if ref:
                r.add(ref[0], ref[1], loc, tags=[ref[2]] if ref[2] else [], digests=[ref[3]] if ref[3] else [],
                      platforms=default_platforms, referrers=default_referrers, pinned=bool(ref[2] and ref[3]))
            continue
        if not isinstance(item, dict):
            r.problem(loc, f"expected an image reference or a mapping with 'name', got {show_value(item)}")
            continue
        r.keys(item, _ENTRY_KEYS, loc)
        ref = r.reference(item.get("name"), (*loc, "name"))
        if ref is None:
            continue
        tags = r.strings(item["tags"], (*loc, "tags"), "tags") if "tags" in item else []
        digests = r.strings(item["digests"], (*loc, "digests"), "digests") if "digests" in item else []
        platforms = r.platforms(item["platforms"], (*loc, "platforms")) if "platforms" in item \
            else default_platforms
        referrers = r.flag(item["referrers"], (*loc, "referrers")) if "referrers" in item else default_referrers
        r.add(ref[0], ref[1], loc, tags=[*([ref[2]] if ref[2] else []), *tags],
              digests=[*([ref[3]] if ref[3] else []), *digests], regex=item.get("tag-regex"),
              semver=item.get("semver"), platforms=platforms, referrers=referrers, pinned=bool(ref[2] and ref[3]))


def _access(r: _Reader, settings: Any, loc: Loc) -> Access:
    if not isinstance(settings, dict):
        r.problem(loc, f"expected a mapping of {', '.join(_ACCESS_KEYS)}, got {show_value(settings)}")
        return Access()
    r.keys(settings, _ACCESS_KEYS, loc)
    password = str(settings.get("password") or "")
    if settings.get("password-env"):
        variable = str(settings["password-env"])
        password = os.environ.get(variable, "")
        if not password:
            r.problem((*loc, "password-env"), f"the environment variable {variable} is not set or empty")
    url = settings.get("url")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        r.problem((*loc, "url"), f"expected an http:// or https:// URL, got {show_value(url)}")
        url = None
    flags = {k: r.flag(settings[k], (*loc, k)) for k in ("insecure", "plain-http") if k in settings}
    return Access(url, str(settings.get("username") or ""), password, _opt(settings.get("ca")),
                  flags.get("insecure", False), flags.get("plain-http", False),
                  _opt(settings.get("certificate")), _opt(settings.get("key")))


def _opt(value: Any) -> str | None:
    return str(value) if value else None


def _skopeo(r: _Reader, doc: dict[str, Any]) -> None:
    for host, section in doc.items():
        loc: Loc = (str(host),)
        r.keys(section, _SKOPEO_KEYS, loc)
        registry = str(host).lower()
        credentials = section.get("credentials") or {}
        verify = section.get("tls-verify", True)
        ca = certificate = key = None
        if section.get("cert-dir"):
            ca, certificate, key = _cert_dir(Path(str(section["cert-dir"])))
        r.out.access[registry] = Access(
            None, str(credentials.get("username") or "") if isinstance(credentials, dict) else "",
            str(credentials.get("password") or "") if isinstance(credentials, dict) else "",
            ca, verify is False, verify is False, certificate, key)
        for key_name in ("images", "images-by-tag-regex", "images-by-semver"):
            repos = section.get(key_name) or {}
            if not isinstance(repos, dict):
                r.problem((*loc, key_name), f"expected a mapping of repositories, got {show_value(repos)}")
                continue
            for repo, value in repos.items():
                at: Loc = (*loc, key_name, str(repo))
                ref = r.reference(f"{registry}/{repo}", at)
                if ref is None:
                    continue
                if key_name == "images":
                    r.add(registry, ref[1], at, tags=r.strings(value or [], at, "tags"), all_tags=not value)
                elif key_name == "images-by-tag-regex":
                    r.add(registry, ref[1], at, regex=value)
                else:
                    r.add(registry, ref[1], at, semver=value)


def _cert_dir(directory: Path) -> tuple[str | None, str | None, str | None]:
    """skopeo's cert-dir: `*.crt` are CAs, `*.cert` with its `*.key` a client certificate."""
    cas = sorted(directory.glob("*.crt"))
    certs = sorted(directory.glob("*.cert"))
    cert = certs[0] if certs else None
    key = cert.with_suffix(".key") if cert else None
    return (str(cas[0]) if cas else None, str(cert) if cert else None, str(key) if key else None)


def _hauler(pairs: list[tuple[Any, yaml.Node]], name: str) -> _Reader:
    positions: dict[Loc, tuple[int, int]] = {}
    for n, (_, node) in enumerate(pairs):
        positions.update({(n, *loc): at for loc, at in yaml_positions(node).items()})
    out = _Reader(name, positions)
    for n, (doc, _) in enumerate(pairs):
        r = _Reader(name, positions, (n,))
        r.out = out.out
        if not isinstance(doc, dict):
            r.problem((), f"expected a hauler manifest (apiVersion, kind, spec), got {show_value(doc)}")
        elif doc.get("kind") != "Images":
            r.out.warnings.append(f"{r.at(('kind',))}: kind {doc.get('kind')!r} skipped (only Images are read)")
        else:
            _hauler_images(r, doc)
        out.problems.extend(r.problems)
    return out


def _hauler_images(r: _Reader, doc: dict[str, Any]) -> None:
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    default_platform = annotations.get("hauler.dev/platform")
    registry = str(annotations.get("hauler.dev/registry") or "")
    images = (doc.get("spec") or {}).get("images")
    if not isinstance(images, list):
        r.problem(("spec", "images"), f"expected a list of images, got {show_value(images)}")
        return
    for i, item in enumerate(images):
        loc: Loc = ("spec", "images", i)
        if not isinstance(item, dict):
            r.problem(loc, f"expected a mapping with 'name', got {show_value(item)}")
            continue
        r.keys(item, _HAULER_IMAGE_KEYS, loc)
        ref = r.reference(item.get("name"), (*loc, "name"), registry)
        if ref is None:
            continue
        if item.get("key") or item.get("certificate-identity") or item.get("certificate-identity-regexp"):
            r.out.warnings.append(f"{r.at((*loc, 'key'))}: signatures are not verified by k3sreg; "
                                  "set referrers to copy them")
        if item.get("rewrite"):
            r.out.warnings.append(f"{r.at((*loc, 'rewrite'))}: 'rewrite' is ignored; the image keeps its name")
        platform = item.get("platform") or default_platform
        platforms = r.platforms(str(platform).split(","), (*loc, "platform")) if platform else None
        r.add(ref[0], ref[1], loc, tags=[ref[2]] if ref[2] else [], digests=[ref[3]] if ref[3] else [],
              platforms=platforms)
