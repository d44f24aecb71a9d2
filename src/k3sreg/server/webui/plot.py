"""The savings plot: bytes served from the cache per upstream over time, as inline SVG (no script, no library).

Each upstream is a line of the points the server sampled (stats.SavingsHistory), each point a circle with
its value as tooltip. The counters restart with the server, so the plot shows the savings since then.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from k3sreg.server.webui.render import esc, human_bytes

WIDTH, HEIGHT = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 72, 16, 16, 44
_SERIES = 6  # colours in page.css (.s0 ... .s5)


def _nice(top: float) -> float:
    """The smallest of 1, 2, 5 × 10^k (× 1024^j for bytes: a round number of KiB, MiB...) at least `top`."""
    if top <= 0:
        return 1024.0
    unit = 1.0
    while top / unit >= 1024:
        unit *= 1024
    step = 1.0
    while step * 10 <= top / unit:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step * unit >= top:
            return m * step * unit
    return 10 * step * unit


def _clock(when: float, seconds: bool = False) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%H:%M:%S" if seconds else "%H:%M")


def savings_svg(points: Sequence[tuple[float, dict[str, float]]], upstreams: Sequence[str]) -> str:
    """The plot of `points` (time, bytes saved so far per upstream), or a note when there is nothing to plot."""
    if not upstreams:
        return '<p class="muted">No upstream is configured: nothing is cached, so nothing is saved.</p>'
    if not points:
        return '<p class="muted">The first point of the plot is being taken.</p>'
    first, last = points[0][0], points[-1][0]
    span = last - first if last > first else 60.0
    top = _nice(max((v for _, values in points for v in values.values()), default=0.0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + (t - first) / span * plot_w

    def y(v: float) -> float:
        return _TOP + plot_h - v / top * plot_h

    parts = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="Bytes saved per upstream over time">']
    for i in range(5):
        value = top * i / 4
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
                     f'<text class="axis" x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
                     f"{esc(human_bytes(value))}</text>")
    for t, anchor in ((first, "start"), (first + span, "end")):
        parts.append(f'<text class="axis" x="{x(t):.1f}" y="{HEIGHT - _BOTTOM + 16}" text-anchor="{anchor}">'
                     f"{esc(_clock(t, span < 600))} UTC</text>")
    for n, name in enumerate(upstreams):
        series = [(t, values[name]) for t, values in points if name in values]
        cls = f"s{n % _SERIES}"
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series)
        parts.append(f'<g class="series {cls}" data-upstream="{esc(name)}"><polyline points="{coords}"/>')
        parts.extend(f'<circle class="pt" cx="{x(t):.1f}" cy="{y(v):.1f}" r="3"><title>{esc(name)}: '
                     f"{esc(human_bytes(v))} saved at {esc(_clock(t))} UTC</title></circle>" for t, v in series)
        parts.append("</g>")
        legend_x = _LEFT + n * 160
        parts.append(f'<g class="legend {cls}"><rect x="{legend_x}" y="{HEIGHT - 16}" width="10" height="10"/>'
                     f'<text x="{legend_x + 14}" y="{HEIGHT - 7}">{esc(name)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
