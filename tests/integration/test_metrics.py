"""Prometheus metrics of a real `k3sreg serve --workers 2`: described from start-up, counted once per request
and summed over the workers, the cache's savings per upstream, the storage gauges, Distribution's debug
listener, and a Grafana dashboard that asks only for what is there."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.peers import api
from tests.peers.images import TestLayout
from tests.peers.registry import DockerRegistry, K3sregServer, free_port
from tests.peers.skopeo import Skopeo

UPSTREAM = "upstream.test"
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
FAMILIES = {
    "k3sreg_http_requests", "k3sreg_http_request_duration_seconds", "k3sreg_http_request_bytes",
    "k3sreg_http_response_bytes", "k3sreg_proxy_requests", "k3sreg_proxy_hits", "k3sreg_proxy_misses",
    "k3sreg_proxy_stale", "k3sreg_proxy_served_bytes", "k3sreg_proxy_saved_bytes", "k3sreg_proxy_fetched_bytes",
    "k3sreg_proxy_evicted", "k3sreg_proxy_fills_in_progress", "k3sreg_gc_runs", "k3sreg_gc_freed_bytes",
    "k3sreg_gc_removed_objects", "k3sreg_storage_blob_bytes", "k3sreg_storage_blobs",
    "k3sreg_storage_filesystem_size_bytes", "k3sreg_storage_filesystem_free_bytes",
}


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}, parsed with prometheus_client's text parser; HELP kept aside."""
    resp = api.request("GET", url)
    assert resp.status == 200, resp.body[:300]
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(resp.body.decode()):
        out.setdefault(f"#family {family.name}", {})[(("help", family.documentation),)] = 0.0
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(found: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return found.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo, oci_layout: TestLayout
             ) -> Iterator[DockerRegistry]:
    """A docker-registry holding library/demo:1, to pull through."""
    with DockerRegistry(tmp_path_factory.mktemp("metrics-upstream")) as reg:
        skopeo.copy(oci_layout.oci_ref(), f"docker://{reg.host}/library/demo:1")
        yield reg


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: DockerRegistry) -> Iterator[K3sregServer]:
    """k3sreg with two workers and `upstream` as UPSTREAM; its metrics files go under its own TMPDIR."""
    work = tmp_path_factory.mktemp("metrics-k3sreg")
    reg = K3sregServer(work, workers=2, config={"upstreams": [{"name": UPSTREAM, "url": upstream.url}]})
    (work / "tmp").mkdir()
    reg.env["TMPDIR"] = str(work / "tmp")
    with reg:
        yield reg


def test_every_metric_is_described_from_start_up(server: K3sregServer) -> None:
    """Before any request but the readiness probe, a scrape shows HELP for every k3sreg metric family."""
    found = scrape(f"{server.url}/metrics")
    described = {k.split(" ", 1)[1] for k in found if k.startswith("#family ")}
    assert described >= FAMILIES, FAMILIES - described
    assert value(found, "k3sreg_proxy_hits_total", upstream=UPSTREAM, kind="blob") == 0.0
    assert (("upstream", UPSTREAM),) in found["k3sreg_proxy_saved_bytes_total"]


def _worker_counts(metrics_dir: Path, tmp: Path) -> list[float]:
    """Requests each worker counted for `GET /v2/` (each worker's counter file read on its own)."""
    counts = []
    for i, db in enumerate(sorted(metrics_dir.glob("counter_*.db"))):
        alone = tmp / f"worker{i}"
        alone.mkdir()
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        counts.append(sum(s.value for f in registry.collect() for s in f.samples
                          if s.name == "k3sreg_http_requests_total" and s.labels.get("route") == "base"))
    return counts


def test_requests_are_counted_once_and_summed_over_workers(server: K3sregServer, tmp_path: Path) -> None:
    """Each request is counted once whichever worker answers it, and a scrape sums both workers' counts."""
    labels = {"route": "base", "method": "GET", "status": "200"}
    time.sleep(1.5)  # earlier requests (the readiness probe) reach the shared files within a second
    before = value(scrape(f"{server.url}/metrics"), "k3sreg_http_requests_total", **labels)
    for _ in range(60):  # a connection each: the kernel spreads them over both workers
        assert api.request("GET", f"{server.url}/v2/").status == 200
    deadline = time.monotonic() + 10
    while True:  # each worker moves its counts to the shared files every second
        found = scrape(f"{server.url}/metrics")
        if value(found, "k3sreg_http_requests_total", **labels) >= before + 60 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert value(found, "k3sreg_http_requests_total", **labels) == before + 60
    assert value(found, "k3sreg_http_request_duration_seconds_count", route="base", method="GET") >= before + 60
    assert value(found, "k3sreg_http_response_bytes_total", route="base") > 0
    metrics_dir = next((Path(server.env["TMPDIR"])).glob("k3sreg-metrics-*"))
    per_worker = [n for n in _worker_counts(metrics_dir, tmp_path) if n]  # the master process counts nothing
    assert len(per_worker) == 2, per_worker
    assert sum(per_worker) == before + 60


def test_pull_through_counts_misses_then_savings(server: K3sregServer, skopeo: Skopeo, oci_layout: TestLayout,
                                                 tmp_path: Path) -> None:
    """A first pull through the cache is misses and fetched bytes; a second is hits and bytes saved."""
    ref = f"docker://{server.host}/{UPSTREAM}/library/demo:1"
    skopeo.copy(ref, f"dir:{tmp_path / 'first'}")
    blobs = sum(p.stat().st_size for p in (tmp_path / "first").iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name))
    found = scrape(f"{server.url}/metrics")
    assert value(found, "k3sreg_proxy_misses_total", upstream=UPSTREAM, kind="blob") >= 3
    assert value(found, "k3sreg_proxy_fetched_bytes_total", upstream=UPSTREAM) >= blobs
    saved_before = value(found, "k3sreg_proxy_saved_bytes_total", upstream=UPSTREAM)
    skopeo.copy(ref, f"dir:{tmp_path / 'second'}")
    found = scrape(f"{server.url}/metrics")
    assert value(found, "k3sreg_proxy_hits_total", upstream=UPSTREAM, kind="blob") >= 3
    assert value(found, "k3sreg_proxy_saved_bytes_total", upstream=UPSTREAM) - saved_before >= blobs
    assert value(found, "k3sreg_proxy_fills_in_progress", upstream=UPSTREAM) == 0


def test_dashboard_asks_only_for_exposed_metrics(server: K3sregServer) -> None:
    """Every expression of docs/grafana-dashboard.json names metrics that the server's scrape holds."""
    api.request("GET", f"{server.url}/v2/")
    time.sleep(1.5)
    exposed = {k for k in scrape(f"{server.url}/metrics") if not k.startswith("#")}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    named = {m for e in exprs for m in re.findall(r"\b(k3sreg_[a-z_]+)", e)}
    assert named - exposed == set()
    assert {"k3sreg_proxy_saved_bytes_total", "k3sreg_http_request_duration_seconds_bucket",
            "k3sreg_proxy_fills_in_progress", "k3sreg_gc_freed_bytes_total", "k3sreg_storage_blob_bytes"} <= named


def test_storage_gauge_counts_the_blobs(tmp_path: Path, skopeo: Skopeo, oci_layout: TestLayout) -> None:
    """The blob gauges count every blob in the store and its bytes (counted at start-up, then again every
    web.sampleinterval at most)."""
    with K3sregServer(tmp_path / "reg") as reg:
        skopeo.copy(oci_layout.oci_ref(), f"docker://{reg.host}/library/demo:1")
        reg.restart()
        files = [p for p in (reg.root / "docker/registry/v2/blobs").rglob("data")]
        deadline = time.monotonic() + 10
        while (found := scrape(f"{reg.url}/metrics")) and value(found, "k3sreg_storage_blobs") < len(files):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert value(found, "k3sreg_storage_blob_bytes") == sum(p.stat().st_size for p in files)
        assert value(found, "k3sreg_storage_filesystem_size_bytes") > 0


def test_debug_listener_serves_the_metrics(tmp_path: Path) -> None:
    """With http.debug.addr and prometheus enabled, the metrics are served there and, as by Distribution, not
    on the registry's port."""
    port = free_port()
    debug = {"debug": {"addr": f"127.0.0.1:{port}", "prometheus": {"enabled": True, "path": "/prom"}}}
    with K3sregServer(tmp_path / "reg", workers=2, config={"http": debug}) as reg:
        found = scrape(f"http://127.0.0.1:{port}/prom")
        assert "#family k3sreg_http_requests" in found
        assert api.request("GET", f"{reg.url}/metrics").status == 404
        assert api.request("GET", f"http://127.0.0.1:{port}/v2/").status == 404
