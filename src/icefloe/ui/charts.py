"""Line charts as numbers for an SVG template (pure): no chart library, no script.

A chart is computed here as pixel coordinates and tick labels; the template draws it as
inline SVG, escaping every label like any other text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 640, 180, 56, 22, 10, 12


@dataclass(frozen=True)
class Chart:
    """One series over time, ready to draw."""

    title: str
    points: str  # "x,y x,y ..." for a polyline
    dots: list[tuple[float, float, str]]  # each point, with its hover text
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    lines: list[tuple[float, str]] = field(default_factory=list)  # thresholds
    width: int = WIDTH
    height: int = HEIGHT
    empty: bool = False
    last: str = ""


def _nice(lo: float, hi: float) -> tuple[float, float]:
    if math.isclose(lo, hi):
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _label(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _time(ms: float, span_ms: float) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%H:%M:%S" if span_ms < 86_400_000 else "%m-%d %H:%M")


def line_chart(title: str, series: Sequence[tuple[int, float | None]],
               thresholds: Sequence[tuple[float, str]] = (),
               bounds: tuple[float, float] | None = None, x_is_time: bool = True) -> Chart:
    """A chart of ``(time ms, value)`` points (None values are gaps, left out).

    Args:
        title: What is drawn.
        series: The points, oldest first.
        thresholds: Horizontal lines ``(value, label)``, e.g. an alert rule's threshold.
        bounds: Fixed y range (e.g. 0..1 for accuracy); else from the data.
        x_is_time: The x values are epoch ms (else plain numbers, e.g. model versions).
    """
    known = [(t, v) for t, v in series if v is not None and math.isfinite(v)]
    if not known:
        return Chart(title, "", [], [], [], empty=True)
    values = [v for _, v in known] + [v for v, _ in thresholds]
    lo, hi = bounds if bounds is not None else _nice(min(values), max(values))
    t0, t1 = known[0][0], known[-1][0]
    span = max(t1 - t0, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return round(LEFT + (t - t0) / span * plot_w, 1) if t1 > t0 else LEFT + plot_w / 2

    def y(v: float) -> float:
        clamped = min(max(v, lo), hi)
        return round(TOP + (1 - (clamped - lo) / (hi - lo)) * plot_h, 1)

    def x_label(t: float) -> str:
        return _time(t, span) if x_is_time else f"v{t:g}"

    dots = [(x(t), y(v), f"{x_label(t)}: {_label(v)}") for t, v in known]
    y_ticks = [(y(lo + (hi - lo) * i / 4), _label(lo + (hi - lo) * i / 4)) for i in range(5)]
    if not x_is_time:
        x_ticks = [(x(t), x_label(t)) for t, _ in known][:12]
    elif t1 > t0:
        x_ticks = [(x(t0 + span * i / 3), x_label(t0 + span * i / 3)) for i in range(4)]
    else:
        x_ticks = [(x(t0), x_label(t0))]
    return Chart(title=title, points=" ".join(f"{a},{b}" for a, b, _ in dots), dots=dots,
                 y_ticks=y_ticks, x_ticks=x_ticks,
                 lines=[(y(v), f"{label} {_label(v)}") for v, label in thresholds],
                 last=_label(known[-1][1]))
