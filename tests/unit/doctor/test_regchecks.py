"""The registry's own readings: free space, cache hit ratio, upstream reachability, from what k3sreg serves."""

from __future__ import annotations

from k3sreg.doctor.regchecks import GiB, MiB, cache_verdicts, parse_metrics, storage_verdict, upstream_verdicts

METRICS = """# HELP k3sreg_proxy_requests_total Proxied requests
# TYPE k3sreg_proxy_requests_total counter
k3sreg_proxy_requests_total{kind="manifest",upstream="docker.io"} 30.0
k3sreg_proxy_requests_total{kind="blob",upstream="docker.io"} 70.0
k3sreg_proxy_requests_total{kind="blob",upstream="ghcr.io"} 4.0
# HELP k3sreg_proxy_hits_total Proxied requests served from the cache
# TYPE k3sreg_proxy_hits_total counter
k3sreg_proxy_hits_total{kind="manifest",upstream="docker.io"} 5.0
k3sreg_proxy_hits_total{kind="blob",upstream="docker.io"} 10.0
# HELP k3sreg_storage_filesystem_free_bytes Bytes of the storage filesystem available to k3sreg
# TYPE k3sreg_storage_filesystem_free_bytes gauge
k3sreg_storage_filesystem_free_bytes 1.5e+09
# HELP k3sreg_storage_filesystem_size_bytes Size of the storage filesystem in bytes
# TYPE k3sreg_storage_filesystem_size_bytes gauge
k3sreg_storage_filesystem_size_bytes 2.0e+10
"""


def test_metrics_are_summed_per_upstream() -> None:
    """Counters are added over kinds; the storage gauges are read."""
    storage, requests, hits = parse_metrics(METRICS)
    assert storage == {"free": 1.5e9, "size": 2e10}
    assert requests == {"docker.io": 100.0, "ghcr.io": 4.0} and hits == {"docker.io": 15.0}


def test_free_space_thresholds() -> None:
    """Plenty passes; under 10 % or 2 GiB warns; under 2 % or 256 MiB fails, with a fix."""
    assert storage_verdict(50 * GiB, 100 * GiB).status == "pass"
    assert storage_verdict(1.5 * GiB, 20 * GiB).status == "warn"
    low = storage_verdict(100 * MiB, 20 * GiB)
    assert low.status == "fail" and "100.0 MiB free of 20.0 GiB" in low.seen and low.fix


def test_cache_hit_ratio_per_upstream() -> None:
    """A low ratio over many requests warns; few requests or none pass."""
    found = {f.subject: f for f in cache_verdicts({"docker.io": 100, "ghcr.io": 4}, {"docker.io": 15})}
    assert found["docker.io"].status == "warn" and "15% of 100" in found["docker.io"].seen
    assert found["ghcr.io"].status == "pass"
    assert [f.seen for f in cache_verdicts({}, {})] == ["no proxied request yet"]


def test_upstream_reachability() -> None:
    """An unreachable upstream fails with the registry's reason; offline and reachable ones pass."""
    found = upstream_verdicts({"upstreams": [
        {"name": "docker.io", "reachable": False, "detail": "connection refused"},
        {"name": "quay.io", "offline": True, "reachable": None},
        {"name": "ghcr.io", "reachable": True, "detail": "answers"}]})
    assert [(f.subject, f.status) for f in found] == [("docker.io", "fail"), ("quay.io", "pass"), ("ghcr.io", "pass")]
    assert "connection refused" in found[0].seen
    assert upstream_verdicts({"upstreams": []})[0].status == "pass"
    assert upstream_verdicts(["x"])[0].status == "warn"
