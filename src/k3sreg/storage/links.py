"""Link files, Distribution's pointers: a small file holding "sha256:<hex>", named after the digest it holds."""

from __future__ import annotations

from collections.abc import Iterator

from k3sreg.oci.digest import Digest, InvalidDigest
from k3sreg.storage import paths
from k3sreg.storage.driver import Driver, PathNotFound


def read_link(driver: Driver, path: str) -> Digest | None:
    """The digest a link file names, or None when there is no (valid) link."""
    try:
        raw = driver.get_content(path)
    except PathNotFound:
        return None
    try:
        return Digest.parse(raw.decode("ascii", "replace").strip())
    except InvalidDigest:
        return None


def write_link(driver: Driver, path: str, d: Digest) -> None:
    driver.put_content(path, str(d).encode())


def digests_under(driver: Driver, base: str) -> Iterator[Digest]:
    """The digests of the `<alg>/<hex>` directories under `base` (`_layers`, `revisions`, a referrers index),
    from two levels of listing, without reading any link."""
    for alg in driver.list(base):
        for hexd in driver.list(paths.child(base, alg)):
            try:
                yield Digest.parse(f"{alg}:{hexd}")
            except InvalidDigest:
                continue
