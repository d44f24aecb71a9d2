"""Image lists: k3sreg's YAML, hauler's Images manifests and skopeo's sync YAML, and their problems."""

from __future__ import annotations

import pytest

from k3sreg.errors import ConfigError
from k3sreg.images.lists import parse_list
from k3sreg.images.platforms import Platform

OWN = """\
registries:
  docker.io: {url: http://127.0.0.1:5000, username: me, password: pw}
platforms: [linux/arm64]
referrers: true
images:
  - busybox
  - ghcr.io/org/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  - name: quay.io/coreos/etcd
    tag-regex: '^v3\\.5\\.'
    semver: '>=3.5.10 <3.6'
    platforms: [linux/amd64]
    referrers: false
  - name: docker.io/library/redis
    tags: ["7.2", "7.4"]
"""


def test_own_format_reads_references_filters_and_defaults() -> None:
    """Plain references get docker.io/library and latest; filters, platforms and referrers carry over."""
    parsed = parse_list(OWN)
    busybox, app, etcd, redis = parsed.entries
    assert (busybox.registry, busybox.repository, busybox.tags) == ("docker.io", "library/busybox", ("latest",))
    assert busybox.platforms == (Platform("linux", "arm64"),) and busybox.referrers
    assert app.tags == () and app.digests == ("sha256:" + "a" * 64,)
    assert etcd.lists_tags and etcd.wants("v3.5.17") and not etcd.wants("v3.5.9") and not etcd.wants("3.6.0")
    assert etcd.platforms == (Platform("linux", "amd64"),) and not etcd.referrers
    assert redis.tags == ("7.2", "7.4")
    assert parsed.access["docker.io"].url == "http://127.0.0.1:5000" and parsed.access["docker.io"].password == "pw"


def test_tag_and_digest_together_pin_the_tag() -> None:
    """`name:tag@digest` copies the digest and gives it the tag, without looking the tag up."""
    entry = parse_list(f"images: ['nginx:1.27@sha256:{'b' * 64}']").entries[0]
    assert entry.pinned and entry.tags == ("1.27",) and entry.digests == ("sha256:" + "b" * 64,)


HAULER = """\
apiVersion: content.hauler.cattle.io/v1
kind: Images
metadata:
  name: example
  annotations:
    hauler.dev/platform: linux/amd64
    hauler.dev/registry: registry.example:5000
spec:
  images:
    - name: rancher/pause:3.6
    - name: ghcr.io/org/app:1
      platform: linux/arm64
      key: cosign.pub
---
apiVersion: content.hauler.cattle.io/v1
kind: Charts
spec: {charts: [{name: rancher}]}
"""


def test_hauler_images_manifest_is_read_as_it_is() -> None:
    """hauler's registry and platform annotations apply; a key is warned about; other kinds are skipped."""
    parsed = parse_list(HAULER, "haul.yaml")
    pause, app = parsed.entries
    assert (pause.registry, pause.repository, pause.tags) == ("registry.example:5000", "rancher/pause", ("3.6",))
    assert pause.platforms == (Platform("linux", "amd64"),)
    assert app.registry == "ghcr.io" and app.platforms == (Platform("linux", "arm64"),)
    assert any("not verified" in w for w in parsed.warnings)
    assert any("'Charts' skipped" in w and w.startswith("haul.yaml:16:1:") for w in parsed.warnings)


SKOPEO = """\
registry.example.com:
    images:
        busybox: []
        redis:
            - "1.0"
            - "sha256:0000000000000000000000000000000011111111111111111111111111111111"
    images-by-tag-regex:
        nginx: ^1\\.13\\.[12]-alpine-perl$
    images-by-semver:
        etcd: ">= 3.5.0"
    credentials:
        username: john
        password: this is a secret
    tls-verify: false
quay.io:
    images:
        coreos/etcd:
            - latest
"""


def test_skopeo_sync_yaml_is_read_as_it_is() -> None:
    """Every repository of each registry; [] means every tag; tls-verify false allows plain HTTP."""
    parsed = parse_list(SKOPEO)
    by_name = {e.name: e for e in parsed.entries}
    assert by_name["registry.example.com/busybox"].all_tags
    redis = by_name["registry.example.com/redis"]
    assert redis.tags == ("1.0",) and redis.digests == ("sha256:" + "0" * 32 + "1" * 32,)
    assert by_name["registry.example.com/nginx"].wants("1.13.2-alpine-perl")
    assert by_name["registry.example.com/etcd"].wants("3.5.1")
    assert by_name["quay.io/coreos/etcd"].tags == ("latest",)
    access = parsed.access["registry.example.com"]
    assert (access.username, access.password, access.plain_http, access.insecure) == ("john", "this is a secret",
                                                                                      True, True)


@pytest.mark.parametrize(("text", "expected"), [
    ("images:\n  - name: nginx\n    tagz: [1]\n", "list.yaml:3:5: images[0].tagz: unknown key; did you mean 'tags'?"),
    ("images:\n  - name: nginx\n    platforms: [linux]\n",
     "list.yaml:3:17: images[0].platforms[0]: expected a platform such as 'linux/amd64'"),
    ("images:\n  - name: nginx\n    tag-regex: '(['\n", "list.yaml:3:5: images[0].tag-regex: invalid regular"),
    ("images:\n  - name: nginx\n    semver: '>=banana'\n", "list.yaml:2:5: images[0]: 'banana' in the version"),
    ("images:\n  - 'Not A Ref!'\n", "list.yaml:2:5: images[0]: invalid repository name"),
    ("images: [\n", "list.yaml:2:1: not valid YAML"),
    ("images: []\n", "list.yaml: the list names no image"),
])
def test_bad_lists_name_line_and_column(text: str, expected: str) -> None:
    """Each problem is one line starting FILE:LINE:COL and the key path."""
    with pytest.raises(ConfigError) as caught:
        parse_list(text, "list.yaml")
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once() -> None:
    """Two bad entries give two problems."""
    with pytest.raises(ConfigError) as caught:
        parse_list("images:\n  - name: a\n    x: 1\n  - name: b\n    y: 2\n", "l.yaml")
    assert len(caught.value.problems) == 2
