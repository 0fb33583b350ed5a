"""Trend charts as inline SVG, drawn on the server (the dashboard loads no script).

A chart is a time axis against one measurement: the patient's scans as points
joined by a line, and each progression alert as a red dashed segment from the
prior scan to the later one with a ring around the later point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 48, 28, 44
ALERT_COLOR = "#d62728"


@dataclass(frozen=True)
class Point:
    key: str  # Series Instance UID: alerts refer to their scans by it
    when: datetime
    value: float


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def time_chart(
    points: Sequence[Point],
    *,
    title: str,
    unit: str,
    color: str,
    alerts: Sequence[tuple[str, str]] = (),
    css_id: str = "",
) -> Markup:
    """An SVG chart of ``points``; ``alerts`` are (prior key, later key) pairs."""
    points = sorted(points, key=lambda p: p.when)
    if not points:
        return Markup("<p class='empty'>No analysed scans on this timeline.</p>")
    start, end = points[0].when, points[-1].when
    if end - start < timedelta(hours=2):
        start, end = start - timedelta(hours=12), end + timedelta(hours=12)
    margin = (end - start) * 0.04  # keep the first and last points off the axes
    start, end = start - margin, end + margin
    top_value = max(p.value for p in points) * 1.1 or 1.0
    step = nice_step(top_value)
    y_max = math.ceil(top_value / step) * step
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    seconds = (end - start).total_seconds()

    def x(when: datetime) -> float:
        return LEFT + (when - start).total_seconds() / seconds * plot_w

    def y(value: float) -> float:
        return TOP + plot_h - value / y_max * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(css_id)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{LEFT}" y="16" class="chart-title">{escape(title)} ({escape(unit)})</text>',
    ]
    tick = 0.0
    while tick <= y_max + step / 2:
        ty = y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" class="tick">'
            f"{_fmt(tick)}</text>"
        )
        tick += step
    for i in range(5):
        when = start + (end - start) * (i / 4)
        tx = x(when)
        parts.append(
            f'<text x="{tx:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" class="tick">'
            f"{when:%d %b %H:%M}</text>"
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        f'class="axis"/><line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" class="axis"/>'
    )
    line = " ".join(f"{x(p.when):.1f},{y(p.value):.1f}" for p in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
    by_key = {p.key: p for p in points}
    for prior_key, later_key in alerts:
        prior, later = by_key.get(prior_key), by_key.get(later_key)
        if prior is None or later is None:
            continue
        parts.append(
            f'<line class="alert-link" x1="{x(prior.when):.1f}" y1="{y(prior.value):.1f}" '
            f'x2="{x(later.when):.1f}" y2="{y(later.value):.1f}" stroke="{ALERT_COLOR}" '
            f'stroke-width="2" stroke-dasharray="6 4"/>'
            f'<circle class="alert-marker" cx="{x(later.when):.1f}" cy="{y(later.value):.1f}" '
            f'r="10" fill="none" stroke="{ALERT_COLOR}" stroke-width="2.5">'
            f"<title>progression alert: against the scan of {prior.when:%Y-%m-%d %H:%M}</title>"
            f"</circle>"
        )
    for p in points:
        parts.append(
            f'<circle class="point" cx="{x(p.when):.1f}" cy="{y(p.value):.1f}" r="5" '
            f'fill="{color}" data-value="{p.value:g}"><title>{p.when:%Y-%m-%d %H:%M} UTC: '
            f"{_fmt(p.value)} {escape(unit)}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
