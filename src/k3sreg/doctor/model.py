"""What doctor reports: findings (one check's verdict on one thing), grouped per node, and the whole run.

A finding is `pass`, `warn` (works, but not as probably meant, or could not be checked) or `fail` (a pull
breaks, or K3s does not do what registries.yaml says). Every warn and fail carries a one-sentence fix.

The check ids are stable (scripts match on them, `--json` carries them); `CHECKS` lists them in the order the
table shows them, with the column title.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail")

CHECKS: dict[str, str] = {
    "ssh": "ssh",
    "registries.file": "file",
    "registries.valid": "valid",
    "hosts.current": "hosts",
    "credentials.loaded": "creds",
    "k3s.version": "k3s",
    "k3s.embedded": "spegel",
    "dns": "dns",
    "tcp": "tcp",
    "tls": "tls",
    "api": "api",
    "auth": "auth",
    "resolve": "resolve",
    "fallback": "fallback",
    "registry.api": "api",
    "registry.catalog": "catalog",
    "registry.push": "push",
    "registry.storage": "space",
    "registry.upstreams": "upstreams",
    "registry.cache": "cache",
}
REGISTRY_ROW = "registry"  # the `node` of the findings about the registry itself (--registry)


@dataclass(frozen=True)
class Finding:
    """One verdict: `check` (an id of CHECKS) on `subject` (a file, host:port, image, upstream; "" for the
    node itself), what was `seen`, and for warn/fail the `fix` in one sentence."""

    check: str
    status: Status
    subject: str
    seen: str
    fix: str = ""
    node: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: node, check, status, subject, seen, fix."""
        return asdict(self)


def passed(check: str, subject: str, seen: str) -> Finding:
    """A pass."""
    return Finding(check, "pass", subject, seen)


def warned(check: str, subject: str, seen: str, fix: str) -> Finding:
    """A warning with its fix."""
    return Finding(check, "warn", subject, seen, fix)


def failed(check: str, subject: str, seen: str, fix: str) -> Finding:
    """A failure with its fix."""
    return Finding(check, "fail", subject, seen, fix)


@dataclass
class NodeReport:
    """Everything doctor found on one node (or `registry` for the registry's own checks)."""

    node: str
    address: str = ""
    reached: bool = True
    flavor: str | None = None
    role: str | None = None
    version: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def add(self, findings: Iterable[Finding]) -> None:
        """Append findings, stamped with this node's name."""
        for f in findings:
            self.findings.append(Finding(f.check, f.status, f.subject, f.seen, f.fix, self.node))

    def worst(self, check: str) -> Status | None:
        """The worst status among this node's findings of `check`; None when the check did not run here."""
        found = [f.status for f in self.findings if f.check == check]
        return max(found, key=STATUSES.index) if found else None


@dataclass
class Report:
    """A whole doctor run: one NodeReport per node (and one for the registry), and how long it took."""

    nodes: list[NodeReport]
    elapsed: float = 0.0

    @property
    def findings(self) -> list[Finding]:
        """Every finding, node by node in order."""
        return [f for n in self.nodes for f in n.findings]

    def summary(self) -> dict[str, int]:
        """How many findings of each status (every status present, zeros included)."""
        counts = Counter(f.status for f in self.findings)
        return {s: counts.get(s, 0) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """No finding failed (exit status 0)."""
        return not any(f.status == "fail" for f in self.findings)

    def checks_run(self) -> list[str]:
        """The check ids with at least one finding, in CHECKS order (the columns of the table)."""
        seen = {f.check for f in self.findings}
        return [c for c in CHECKS if c in seen]

    def as_dict(self) -> dict[str, Any]:
        """The `--json` document: ok, summary, elapsed_seconds, nodes (without findings), findings."""
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "elapsed_seconds": round(self.elapsed, 3),
            "nodes": [{"node": n.node, "address": n.address, "reached": n.reached, "flavor": n.flavor,
                       "role": n.role, "version": n.version} for n in self.nodes],
            "findings": [f.as_dict() for f in self.findings],
        }


def problems(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that are not a pass, failures first."""
    return sorted((f for f in findings if f.status != "pass"), key=lambda f: f.status != "fail")
