"""Request figures gathered in memory and flushed to Prometheus, route kinds, and the blob count."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from k3sreg.oci.digest import Digest
from k3sreg.server import metrics, routes
from k3sreg.storage import paths
from k3sreg.storage.blobs import BlobStore
from k3sreg.storage.driver import Driver
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.memory import MemoryDriver
from k3sreg.storage.usage import blob_usage


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_flush_moves_counts_bytes_and_latency_buckets() -> None:
    """Observed requests reach the counters and the right latency buckets only when flushed."""
    stats = metrics.RequestStats()
    stats.observe("test-flush", "GET", 200, 0.003, 0, 1000)
    stats.observe("test-flush", "GET", 200, 0.2, 10, 500)
    stats.observe("test-flush", "BREW", 418, 7.0, 5, 0)
    assert sample("k3sreg_http_requests_total", route="test-flush", method="GET", status="200") == 0
    stats.flush()
    assert sample("k3sreg_http_requests_total", route="test-flush", method="GET", status="200") == 2
    assert sample("k3sreg_http_requests_total", route="test-flush", method="other", status="418") == 1
    assert sample("k3sreg_http_response_bytes_total", route="test-flush") == 1500
    assert sample("k3sreg_http_request_bytes_total", route="test-flush") == 15
    bucket = "k3sreg_http_request_duration_seconds_bucket"
    assert sample(bucket, route="test-flush", method="GET", le="0.0025") == 0
    assert sample(bucket, route="test-flush", method="GET", le="0.005") == 1
    assert sample(bucket, route="test-flush", method="GET", le="0.25") == 2
    assert sample(bucket, route="test-flush", method="other", le="5.0") == 0
    assert sample(bucket, route="test-flush", method="other", le="10.0") == 1
    assert sample("k3sreg_http_request_duration_seconds_sum", route="test-flush", method="GET") == \
        pytest.approx(0.203)
    stats.flush()  # nothing new: nothing counted twice
    assert sample("k3sreg_http_requests_total", route="test-flush", method="GET", status="200") == 2


@pytest.mark.parametrize(("path", "kind"), [
    ("/v2/", "base"), ("/v2", "base"), ("/v2/_catalog", "catalog"), ("/v2/a/b/tags/list", "tags"),
    ("/v2/a/manifests/latest", "manifest"), ("/v2/a/blobs/sha256:" + "0" * 64, "blob"),
    ("/v2/a/blobs/uploads/", "upload"), ("/v2/a/blobs/uploads/1234", "upload"),
    ("/v2/a/referrers/sha256:" + "0" * 64, "referrers"), ("/v2/nothing", "other"), ("/metrics", "other"),
    ("/repositories/a", "other"),
])
def test_route_kind(path: str, kind: str) -> None:
    """Each request path maps to one of a fixed set of route kinds, never to the path itself."""
    assert routes.kind(path) == kind
    assert kind in routes.KINDS


def test_gc_results_are_counted() -> None:
    """record_gc adds one run, the bytes freed and the objects removed."""
    runs, freed = sample("k3sreg_gc_runs_total"), sample("k3sreg_gc_freed_bytes_total")
    metrics.record_gc(4096, 3)
    assert sample("k3sreg_gc_runs_total") == runs + 1
    assert sample("k3sreg_gc_freed_bytes_total") == freed + 4096


@pytest.fixture(params=["filesystem", "inmemory"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Driver:
    return FilesystemDriver(tmp_path) if request.param == "filesystem" else MemoryDriver()


def test_blob_usage_counts_recorded_and_unrecorded_blobs(driver: Driver) -> None:
    """Blobs with a size record and blobs written by Distribution (data only) are both counted, in bytes."""
    blobs = BlobStore(driver)
    for data in (b"a" * 100, b"b" * 2000):
        blobs.put_small(Digest.of(data), data)
    foreign = b"c" * 333
    driver.put_content(paths.blob_data(Digest.of(foreign)), foreign)
    usage = blob_usage(driver)
    assert (usage.blobs, usage.bytes) == (3, 2433)
