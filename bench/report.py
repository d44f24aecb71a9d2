"""Figures, targets and the report: a table of medians with ratios to the baselines, or JSON.

A scenario declares its figures (one row each), then adds samples per server column as it measures. The report
takes the median of each cell and the ratios k3sreg/docker-registry and k3sreg/nginx, and checks each row's
target. Absolute numbers move with the machine's load; the ratios, measured in one run, are what to compare.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.servers import DOCKER_REGISTRY, K3SREG, NGINX

SKOPEO = "skopeo"  # the client-side baseline of `k3sreg images` (bench/scenarios/airgap.py)
COLUMNS = (K3SREG, DOCKER_REGISTRY, NGINX, SKOPEO)


@dataclass(frozen=True)
class Target:
    """What k3sreg's median must satisfy: a ratio to another column (`min`/`max`), or an absolute bound."""

    kind: Literal["ratio_min", "ratio_max", "abs_max", "abs_min", "abs_eq"]
    value: float
    reference: str = DOCKER_REGISTRY
    text: str = ""

    def describe(self) -> str:
        """A short human form, e.g. `≥1.5x docker-registry`."""
        if self.text:
            return self.text
        if self.kind == "ratio_min":
            return f"≥{self.value:g}x {self.reference}"
        if self.kind == "ratio_max":
            return f"≤{self.value:.2g}x {self.reference}"
        if self.kind == "abs_max":
            return f"≤{self.value:g}"
        if self.kind == "abs_min":
            return f"≥{self.value:g}"
        return f"={self.value:g}"

    def check(self, medians: dict[str, float]) -> bool | None:
        """True/False when k3sreg (and the reference, for ratios) were measured, else None."""
        mine = medians.get(K3SREG)
        if mine is None:
            return None
        if self.kind == "abs_max":
            return mine <= self.value
        if self.kind == "abs_min":
            return mine >= self.value
        if self.kind == "abs_eq":
            return mine == self.value
        other = medians.get(self.reference)
        if other is None or other == 0:
            return None
        ratio = mine / other
        return ratio >= self.value if self.kind == "ratio_min" else ratio <= self.value


@dataclass
class Figure:
    """One row of the report: a measured quantity, its unit, samples per column and an optional target."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: Target | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, column: str, value: float) -> None:
        """Record one measurement of this figure for a server column."""
        self.samples.setdefault(column, []).append(value)

    def fail(self, column: str, message: str) -> None:
        """Record that a column could not be measured (the first reason is kept)."""
        self.errors.setdefault(column, message)

    def medians(self) -> dict[str, float]:
        """The median of each column's samples (columns with an error are left out)."""
        return {c: statistics.median(v) for c, v in self.samples.items() if v and c not in self.errors}

    def ratio(self, reference: str) -> float | None:
        """k3sreg's median over the reference column's median, when both exist."""
        medians = self.medians()
        mine, other = medians.get(K3SREG), medians.get(reference)
        # A ratio to zero or of a negative difference (RSS growth) says nothing.
        if mine is None or other is None or other <= 0 or mine < 0:
            return None
        return mine / other


class Results:
    """All figures of a run, in the order scenarios declared them, plus free-form notes."""

    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}
        self.notes: list[str] = []

    def declare(self, figure: Figure) -> Figure:
        """Add a row (its key must be new) and return it for the scenario to fill."""
        if figure.key in self.figures:
            raise ValueError(f"figure {figure.key} declared twice")
        self.figures[figure.key] = figure
        return figure

    def __getitem__(self, key: str) -> Figure:
        return self.figures[key]

    def to_json(self) -> dict[str, object]:
        """Everything measured: samples, medians, ratios and target checks per figure."""
        rows = []
        for fig in self.figures.values():
            medians = fig.medians()
            rows.append(
                {
                    "key": fig.key,
                    "label": fig.label,
                    "unit": fig.unit,
                    "higher_is_better": fig.higher_is_better,
                    "samples": fig.samples,
                    "medians": medians,
                    "errors": fig.errors,
                    "ratio_docker_registry": fig.ratio(DOCKER_REGISTRY),
                    "ratio_nginx": fig.ratio(NGINX),
                    "ratio_skopeo": fig.ratio(SKOPEO),
                    "target": fig.target.describe() if fig.target else None,
                    "target_spec": asdict(fig.target) if fig.target else None,
                    "target_met": fig.target.check(medians) if fig.target else None,
                }
            )
        return {"figures": rows, "notes": self.notes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """The results of an earlier `--json` run, to render again (`--from-json`)."""
        results = cls()
        for row in data["figures"]:
            spec = row.get("target_spec")
            fig = Figure(
                row["key"],
                row["label"],
                row["unit"],
                row["higher_is_better"],
                Target(**spec) if spec else None,
                {k: list(v) for k, v in row["samples"].items()},
                dict(row.get("errors") or {}),
            )
            results.declare(fig)
        results.notes.extend(data.get("notes", []))
        return results


def _cell(fig: Figure, column: str) -> str:
    if column in fig.errors:
        return "error"
    values = fig.samples.get(column)
    return _number(statistics.median(values)) if values else "—"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


_VERDICT = {True: ("ok", "green"), False: ("MISS", "red"), None: ("n/a", "yellow")}


def _verdict(fig: Figure) -> tuple[str, str]:
    """The target and its verdict as text, and the colour to show it in."""
    if fig.target is None:
        return "", ""
    word, style = _VERDICT[fig.target.check(fig.medians())]
    return f"{fig.target.describe()}: {word}", style


def _row(fig: Figure) -> list[str]:
    return [
        f"{fig.label} ({fig.unit})",
        *(_cell(fig, c) for c in COLUMNS),
        _ratio(fig.ratio(DOCKER_REGISTRY)),
        _ratio(fig.ratio(NGINX)),
        _ratio(fig.ratio(SKOPEO)),
    ]


def render_table(results: Results, console: Console, title: str) -> None:
    """Print the report table: one row per figure, medians per server, ratios and the target verdict."""
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    table.add_column("k3sreg/docker-registry", justify="right")
    table.add_column("k3sreg/nginx", justify="right")
    table.add_column("k3sreg/skopeo", justify="right")
    table.add_column("target")
    for fig in results.figures.values():
        verdict, style = _verdict(fig)
        table.add_row(*(Text(cell) for cell in _row(fig)), Text(verdict, style=style))
    console.print(table)
    for fig in results.figures.values():
        for column, message in fig.errors.items():
            console.print(Text(f"{fig.label} / {column}: {message}", style="red"))
    for note in results.notes:
        console.print(Text(f"note: {note}"))


def render_markdown(results: Results) -> str:
    """The same table as GitHub markdown (for docs/benchmarks.md)."""
    header = ["figure", *COLUMNS, "k3sreg/docker-registry", "k3sreg/nginx", "k3sreg/skopeo", "target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fig in results.figures.values():
        lines.append("| " + " | ".join([*_row(fig), _verdict(fig)[0]]) + " |")
    return "\n".join(lines)
