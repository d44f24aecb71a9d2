"""The checks of the registry itself (`--registry URL`), from where doctor runs:

    registry.api        GET /v2/ answers, with the credentials given (down: nothing else is asked)
    registry.catalog    /v2/_catalog is readable
    registry.push       --push-test: a tiny blob is uploaded to k3sreg-doctor/push-test and deleted again
    registry.storage    free space of the storage (k3sreg's `k3sreg_storage_filesystem_free_bytes` in /metrics)
    registry.upstreams  each upstream answers the registry (k3sreg's `GET /debug/upstreams`)
    registry.cache      the share of proxied requests served from the cache, per upstream (/metrics)

The last three need k3sreg; another registry gets a warning saying they could not be read.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from yarl import URL

from k3sreg.client import RegistryClient, RetryPolicy
from k3sreg.client.auth import push_scope
from k3sreg.config.upstreams import UpstreamSettings, UpstreamTLSSettings
from k3sreg.doctor.model import Finding, failed, passed, warned
from k3sreg.errors import Denied, NameUnknown, RegistryError, Unauthorized
from k3sreg.oci.digest import Digest

PUSH_REPOSITORY = "k3sreg-doctor/push-test"
GiB = 1 << 30
MiB = 1 << 20
_NOT_K3SREG = "run k3sreg (this is another registry, or a k3sreg older than `doctor`)"


@dataclass(frozen=True)
class RegistryTarget:
    """The registry to check and how to reach it from here."""

    url: str
    username: str = ""
    password: str = ""
    ca_file: str | None = None
    insecure: bool = False
    push_test: bool = False


def _size(n: float) -> str:
    for unit, div in (("GiB", GiB), ("MiB", MiB)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} bytes"


def storage_verdict(free: float, size: float) -> Finding:
    """registry.storage from the free and total bytes of the storage filesystem."""
    share = free / size if size else 0.0
    seen = f"{_size(free)} free of {_size(size)} ({share:.0%})"
    if free < 256 * MiB or share < 0.02:
        return failed("registry.storage", "storage", f"{seen}: pushes and cache fills are about to fail",
                      "free space (lower the upstreams' ttl or maxsize so eviction removes more), or grow the volume")
    if free < 2 * GiB or share < 0.10:
        return warned("registry.storage", "storage", f"{seen}: running low",
                      "grow the volume, or lower the upstreams' maxsize")
    return passed("registry.storage", "storage", seen)


def cache_verdicts(requests: dict[str, float], hits: dict[str, float]) -> list[Finding]:
    """registry.cache per upstream from the proxied request and hit counters."""
    if not any(requests.values()):
        return [passed("registry.cache", "cache", "no proxied request yet")]
    out = []
    for upstream in sorted(requests):
        total, hit = requests[upstream], hits.get(upstream, 0.0)
        if not total:
            continue
        seen = f"{hit / total:.0%} of {int(total)} proxied requests served from the cache"
        if total >= 20 and hit / total < 0.5:
            out.append(warned("registry.cache", upstream, f"{seen}: most pulls go to the upstream",
                              "raise the upstream's ttl or maxsize, and check the nodes pull by the same names"))
        else:
            out.append(passed("registry.cache", upstream, seen))
    return out


def parse_metrics(text: str) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(k3sreg_storage_* gauges by short name, proxied requests per upstream, cache hits per upstream)."""
    from prometheus_client.parser import text_string_to_metric_families

    storage: dict[str, float] = {}
    requests: dict[str, float] = defaultdict(float)
    hits: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("k3sreg_storage_filesystem_free_bytes", "k3sreg_storage_filesystem_size_bytes"):
                storage[sample.name.split("_")[3]] = sample.value
            elif sample.name == "k3sreg_proxy_requests_total":
                requests[sample.labels.get("upstream", "?")] += sample.value
            elif sample.name == "k3sreg_proxy_hits_total":
                hits[sample.labels.get("upstream", "?")] += sample.value
    return storage, dict(requests), dict(hits)


def upstream_verdicts(document: object) -> list[Finding]:
    """registry.upstreams from the `/debug/upstreams` document."""
    entries = document.get("upstreams") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return [warned("registry.upstreams", "upstreams", "/debug/upstreams is not the document k3sreg serves",
                       _NOT_K3SREG)]
    if not entries:
        return [passed("registry.upstreams", "upstreams", "no upstream configured (pushes only)")]
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("name", "?"))
        detail = str(entry.get("detail", ""))
        if entry.get("offline"):
            out.append(passed("registry.upstreams", name, "offline: true (serves only what it cached)"))
        elif entry.get("reachable"):
            out.append(passed("registry.upstreams", name, f"answers the registry: {detail}"))
        else:
            out.append(failed("registry.upstreams", name, f"the registry cannot reach it: {detail}",
                              "check the registry's way out to it (network, HTTPS_PROXY, credentials); "
                              "until then only cached images are served"))
    return out


def _client(target: RegistryTarget, timeout: float) -> RegistryClient:
    settings = UpstreamSettings(
        name="registry", url=target.url, username=target.username, password=target.password,
        tls=UpstreamTLSSettings(ca=target.ca_file, insecureskipverify=target.insecure), timeout=timeout, retries=0)
    return RegistryClient(settings, retry=RetryPolicy(0))


async def _get(client: RegistryClient, path: str, scope: str = "") -> bytes:
    response = await client.transport.request("GET", client.transport.base.join(URL(path, encoded=True)),
                                              scope=scope, where=path, missing=NameUnknown,
                                              headers={"User-Agent": "k3sreg-doctor"})
    try:
        return await response.read()
    finally:
        response.release()


def _said(e: BaseException) -> str:
    return str(e).removeprefix("upstream registry ").removeprefix("upstream ")


async def check_registry(target: RegistryTarget, timeout: float) -> list[Finding]:
    """Every registry check; the registry down or refusing the credentials ends the list."""
    async with _client(target, timeout) as client:
        try:
            await _get(client, "v2/")
        except Unauthorized as e:
            who = f"user {target.username}" if target.username else "anonymous access"
            return [failed("registry.api", target.url, f"the registry refuses {who}: {_said(e)}",
                           "pass --username and the password (K3SREG_DOCTOR_PASSWORD or --password-stdin)")]
        except RegistryError as e:
            if isinstance(e.__cause__, aiohttp.ClientConnectorCertificateError):
                return [failed("registry.api", target.url, f"the registry's certificate does not verify: "
                               f"{e.__cause__.certificate_error}", "pass --ca-file with the CA that issued it")]
            return [failed("registry.api", target.url, f"registry down: {_said(e)}",
                           "start the registry (in the cluster: `kubectl -n registry get pods`), or correct "
                           "--registry")]
        out = [passed("registry.api", target.url, "GET /v2/ answers 200")]
        out.append(await _catalog(client))
        if target.push_test:
            out.append(await _push_test(client))
        out += await _metrics(client)
        out += await _upstreams(client)
        return out


async def _catalog(client: RegistryClient) -> Finding:
    try:
        body = await _get(client, "v2/_catalog?n=1000", "registry:catalog:*")
    except (Unauthorized, Denied) as e:
        return failed("registry.catalog", "/v2/_catalog", f"the catalog is refused: {_said(e)}",
                      "use an account allowed the catalog (access rules), or check the credentials")
    except RegistryError as e:
        return warned("registry.catalog", "/v2/_catalog", f"the catalog cannot be read: {_said(e)}",
                      "check the registry's logs")
    try:
        names = json.loads(body).get("repositories") or []
    except (ValueError, AttributeError):
        return failed("registry.catalog", "/v2/_catalog", "the catalog is not JSON", "check the registry's logs")
    more = "+" if len(names) >= 1000 else ""
    return passed("registry.catalog", "/v2/_catalog", f"{len(names)}{more} repositories")


async def _push_test(client: RegistryClient) -> Finding:
    data = f"k3sreg doctor push test {os.urandom(8).hex()}\n".encode()
    digest = Digest.of(data)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    try:
        await client.push_blob(PUSH_REPOSITORY, digest, len(data), chunks)
    except (Unauthorized, Denied) as e:
        return failed("registry.push", PUSH_REPOSITORY, f"push refused: {_said(e)}",
                      "use an account with push rights (access rules), or check the credentials")
    except RegistryError as e:
        return failed("registry.push", PUSH_REPOSITORY, f"the test upload failed: {_said(e)}",
                      "check the registry's logs and free space (read-only mode refuses pushes)")
    url = client.transport.base.join(URL(f"v2/{PUSH_REPOSITORY}/blobs/{digest}", encoded=True))
    try:
        response = await client.transport.request("DELETE", url, scope=push_scope(PUSH_REPOSITORY) + ",delete",
                                                  where=PUSH_REPOSITORY, missing=NameUnknown)
        response.release()
    except RegistryError as e:
        return warned("registry.push", PUSH_REPOSITORY, f"a {len(data)}-byte blob was pushed but not deleted "
                      f"({_said(e)}): it stays, referenced by nothing",
                      "enable storage.delete, or remove k3sreg-doctor/push-test by hand")
    return passed("registry.push", PUSH_REPOSITORY, f"pushed a {len(data)}-byte blob and deleted it")


async def _metrics(client: RegistryClient) -> list[Finding]:
    try:
        text = (await _get(client, "metrics")).decode("utf-8", "replace")
        storage, requests, hits = parse_metrics(text)
    except (RegistryError, ValueError) as e:
        seen = f"GET /metrics: {_said(e)}"
        return [warned("registry.storage", "storage", seen, _NOT_K3SREG),
                warned("registry.cache", "cache", seen, _NOT_K3SREG)]
    out = []
    if "free" in storage and "size" in storage:
        out.append(storage_verdict(storage["free"], storage["size"]))
    else:
        seen = "/metrics has no k3sreg_storage_filesystem_free_bytes (storage in memory, or not k3sreg)"
        out.append(warned("registry.storage", "storage", seen, _NOT_K3SREG))
    return out + cache_verdicts(requests, hits)


async def _upstreams(client: RegistryClient) -> list[Finding]:
    try:
        document = json.loads(await _get(client, "debug/upstreams"))
    except (RegistryError, ValueError) as e:
        return [warned("registry.upstreams", "upstreams", f"GET /debug/upstreams: {_said(e)}", _NOT_K3SREG)]
    return upstream_verdicts(document)
