"""Line charts drawn on the server as SVG: no JavaScript library, nothing from the internet.

`line_chart` takes named series of (unix time, value) points and optional
event marks (failovers) and returns an <svg> element with a title and a
description for screen readers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 24, 28
COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df")


@dataclass(frozen=True)
class Mark:
    time: float
    label: str


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def line_chart(
    title: str, series: dict[str, list[tuple[float, float]]], marks: list[Mark] | None = None, unit: str = ""
) -> str:
    points = [p for pts in series.values() for p in pts]
    now = time.time()
    t0 = min((p[0] for p in points), default=now - 60)
    t1 = max((p[0] for p in points), default=now)
    t1 = max(t1, t0 + 1)
    top = max((p[1] for p in points), default=1.0)
    top = top * 1.1 if top > 0 else 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - v / top * plot_h

    latest = ", ".join(f"{name} {_fmt(pts[-1][1])}{unit}" for name, pts in series.items() if pts) or "no samples yet"
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="t-{id(series)}">',
        f'<title id="t-{id(series)}">{escape(title)}: {escape(latest)}</title>',
        f'<text x="{LEFT}" y="15" class="ctitle">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
        f'<text x="4" y="{TOP + 10}" class="axis">{_fmt(top)}{escape(unit)}</text>',
        f'<text x="4" y="{TOP + plot_h}" class="axis">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 8}" class="axis">{time.strftime("%H:%M:%S", time.localtime(t0))}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" class="axis" text-anchor="end">'
        f"{time.strftime('%H:%M:%S', time.localtime(t1))}</text>",
    ]
    for mark in marks or []:
        if t0 <= mark.time <= t1:
            mx = x(mark.time)
            out.append(
                f'<line x1="{mx:.1f}" y1="{TOP}" x2="{mx:.1f}" y2="{TOP + plot_h}" class="mark">'
                f"<title>{escape(mark.label)}</title></line>"
            )
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        if pts:
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        out.append(
            f'<text x="{LEFT + 6 + 110 * i}" y="{TOP + 14}" fill="{colour}" class="legend">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
