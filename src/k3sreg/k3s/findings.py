"""Findings: what `k3sreg mirrors validate` reports, one per problem.

A finding names the key path (`mirrors."docker.io".endpoint[0]`), its line and column in the file when
known, a severity (`error`: K3s refuses the file or silently ignores the setting; `warning`: it works, but
probably not as meant), what goes wrong on the node, and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from k3sreg.problems import key_path

Severity = Literal["error", "warning"]
PathPart = str | int
KeyPath = tuple[PathPart, ...]

def format_path(path: Sequence[PathPart]) -> str:
    """`("mirrors", "docker.io", "endpoint", 0)` → `mirrors."docker.io".endpoint[0]`; `()` → `(top level)`."""
    return key_path(path) or "(top level)"


@dataclass(frozen=True)
class Finding:
    """One problem in a registries.yaml."""

    path: str
    severity: Severity
    code: str
    message: str
    fix: str
    line: int | None = None
    column: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form printed by `validate --json`."""
        return asdict(self)

    def location(self) -> str:
        """`line:column` (1-based) or the empty string when the position is unknown."""
        if self.line is None:
            return ""
        return f"{self.line}:{self.column}" if self.column is not None else str(self.line)


def has_errors(findings: Iterable[Finding]) -> bool:
    """Whether any finding is an error (validate then exits 1)."""
    return any(f.severity == "error" for f in findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Findings in file order; those without a position last, errors before warnings at equal positions."""
    return sorted(
        findings,
        key=lambda f: (f.line is None, f.line or 0, f.column or 0, f.severity != "error", f.path, f.code),
    )
