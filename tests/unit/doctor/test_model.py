"""Findings and reports: worst status per check, problems first, the stable JSON keys."""

from __future__ import annotations

from k3sreg.doctor.model import CHECKS, NodeReport, Report, failed, passed, problems, warned


def report() -> Report:
    """Two nodes and the registry."""
    n1, n2, reg = NodeReport("n1", "10.0.0.1"), NodeReport("n2", "10.0.0.2", reached=False), NodeReport("registry")
    n1.add([passed("tls", "h", "ok"), warned("tls", "h2", "meh", "fix it"), passed("dns", "h", "ok")])
    n2.add([failed("ssh", "root@10.0.0.2:22", "timed out", "check the address")])
    reg.add([passed("registry.api", "https://r", "200")])
    return Report([n1, n2, reg], 1.23456)


def test_findings_are_stamped_with_their_node_and_the_worst_wins() -> None:
    """A node's cell for a check is its worst finding; None when the check did not run there."""
    r = report()
    assert [f.node for f in r.findings] == ["n1", "n1", "n1", "n2", "registry"]
    assert r.nodes[0].worst("tls") == "warn" and r.nodes[0].worst("ssh") is None
    assert r.checks_run() == ["ssh", "dns", "tls", "registry.api"]


def test_ok_summary_and_json_keys() -> None:
    """Any fail makes the run not ok; the JSON document has fixed keys."""
    doc = report().as_dict()
    assert (doc["ok"], doc["summary"], doc["elapsed_seconds"]) == (False, {"pass": 3, "warn": 1, "fail": 1}, 1.235)
    assert set(doc) == {"ok", "summary", "elapsed_seconds", "nodes", "findings"}
    assert set(doc["findings"][0]) == {"node", "check", "status", "subject", "seen", "fix"}
    assert set(doc["nodes"][1]) == {"node", "address", "reached", "flavor", "role", "version"}
    assert doc["nodes"][1]["reached"] is False


def test_problems_list_failures_first() -> None:
    """Passes are left out; fails come before warnings."""
    assert [f.status for f in problems(report().findings)] == ["fail", "warn"]


def test_every_check_has_a_column_title() -> None:
    """Check ids are dotted lower-case words and each has a short title."""
    assert all(title and check == check.lower() for check, title in CHECKS.items())
