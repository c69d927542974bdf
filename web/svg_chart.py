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
        lx, ly = LEFT + 6 + 140 * (i % 4), TOP + 14 + 14 * (i // 4)  # four names to a row
        out.append(f'<text x="{lx}" y="{ly}" fill="{colour}" class="legend">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


STATE_CLASSES = {"active": "s-active", "standby": "s-standby", "down": "s-down"}


def state_lanes(
    history: list[tuple[float, str, str, str]], nodes: list[str], marks: list[Mark], now: float | None = None
) -> str:
    """One lane per node coloured by its state over time (from (time, node, to_state, reason)
    transitions, oldest first), with operator actions as marks: the failover timeline as a chart."""
    now = time.time() if now is None else now
    times = [t for t, *_ in history] + [m.time for m in marks]
    t0 = min(times, default=now - 60)
    t1 = max(now, t0 + 1)
    lane_h, label_w = 26, 90
    height = TOP + lane_h * max(1, len(nodes)) + BOTTOM
    plot_w = WIDTH - label_w - RIGHT

    def x(t: float) -> float:
        return label_w + (t - t0) / (t1 - t0) * plot_w

    out = [
        f'<svg class="chart timeline" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="tl-title">',
        '<title id="tl-title">Node states over time; red lines are operator actions</title>',
        f'<text x="{label_w}" y="15" class="ctitle">Node states over time</text>',
    ]
    for i, node in enumerate(nodes):
        y = TOP + i * lane_h
        out.append(f'<text x="4" y="{y + 17}" class="axis">{escape(node)}</text>')
        changes = [(t, state, reason) for t, n, state, reason in history if n == node]
        for j, (start, state, reason) in enumerate(changes):
            end = changes[j + 1][0] if j + 1 < len(changes) else t1
            css = STATE_CLASSES.get(state, "s-other")
            width = max(1.0, x(end) - x(start))
            out.append(
                f'<rect x="{x(start):.1f}" y="{y + 3}" width="{width:.1f}" height="{lane_h - 6}" class="{css}">'
                f"<title>{escape(node)}: {escape(state)} ({escape(reason)})</title></rect>"
            )
    for mark in marks:
        mx = x(mark.time)
        out.append(
            f'<line x1="{mx:.1f}" y1="{TOP}" x2="{mx:.1f}" y2="{height - BOTTOM}" class="mark">'
            f"<title>{escape(mark.label)}</title></line>"
        )
    out.append(f'<text x="{label_w}" y="{height - 8}" class="axis">{time.strftime("%H:%M:%S", time.gmtime(t0))}</text>')
    out.append(
        f'<text x="{WIDTH - RIGHT}" y="{height - 8}" class="axis" text-anchor="end">'
        f"{time.strftime('%H:%M:%S', time.gmtime(t1))} UTC</text>"
    )
    legend = [("active", "s-active"), ("standby", "s-standby"), ("in transition", "s-other")]
    for k, (name, css) in enumerate(legend):
        lx = label_w + 200 + 110 * k
        out.append(f'<rect x="{lx}" y="5" width="12" height="12" class="{css}"/>')
        out.append(f'<text x="{lx + 16}" y="15" class="legend">{name}</text>')
    out.append("</svg>")
    return "".join(out)
