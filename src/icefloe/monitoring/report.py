"""A self-contained HTML monitoring report (pure: figures and rows in, one HTML text out).

No script, no stylesheet or font from anywhere: inline CSS and SVG charts only, so the file
opens offline and can be mailed. Accuracy and label coverage over time, latency p50/p99 over
time, and each feature's drift against the reference with the usual PSI levels (0.1 and
0.25) drawn. Every text that comes from data (feature names, model names, categories) is
escaped.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from icefloe.monitoring.windows import PSI_LEVELS

if TYPE_CHECKING:
    import pyarrow as pa

BUCKETS = 24
WIDTH, HEIGHT, PAD = 640, 220, 40
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def over_time(rows: pa.Table, start_ms: int, end_ms: int, buckets: int = BUCKETS
              ) -> list[dict[str, Any]]:
    """Per time bucket: start, requests, label coverage, accuracy, latency p50 and p99."""
    times = rows.column("timestamp_ms").to_numpy(zero_copy_only=False).astype(np.int64)
    if rows.num_rows == 0 or end_ms <= start_ms:
        return []
    truth = rows.column("truth").to_numpy(zero_copy_only=False).astype(np.float64)
    scores = rows.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    latency = rows.column("latency_ms").to_numpy(zero_copy_only=False).astype(np.float64)
    width = max(1, -(-(end_ms - start_ms) // buckets))  # ceiling: the end is in the last one
    index = np.clip((times - start_ms) // width, 0, buckets - 1)
    out = []
    for b in range(buckets):
        mask = index == b
        n = int(mask.sum())
        known = mask & np.isfinite(truth)
        labelled = int(known.sum())
        correct = ((scores[known] >= 0.5) == (truth[known] == 1.0)).sum() if labelled else 0
        out.append({
            "start_ms": start_ms + b * width, "requests": n,
            "label_coverage": labelled / n if n else None,
            "accuracy": float(correct) / labelled if labelled else None,
            "latency_p50_ms": float(np.percentile(latency[mask], 50)) if n else None,
            "latency_p99_ms": float(np.percentile(latency[mask], 99)) if n else None,
        })
    return out


def _line_chart(title: str, points: list[dict[str, Any]], keys: list[str],
                y_max: float | None = None, lines: tuple[float, ...] = ()) -> str:
    """An SVG line chart of ``keys`` over the buckets (gaps where a value is None)."""
    values = [p[k] for p in points for k in keys if p.get(k) is not None]
    top = y_max if y_max is not None else (max(values) * 1.1 if values else 1.0) or 1.0
    n = max(1, len(points) - 1)

    def x(i: int) -> float:
        return PAD + i * (WIDTH - 2 * PAD) / n

    def y(v: float) -> float:
        return HEIGHT - PAD - min(v, top) / top * (HEIGHT - 2 * PAD)

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             f'role="img" aria-label="{html.escape(title)}">',
             f'<text x="{PAD}" y="20" class="t">{html.escape(title)}</text>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
             'class="axis"/>',
             f'<text x="4" y="{y(top) + 4:.1f}" class="s">{top:.3g}</text>',
             f'<text x="4" y="{HEIGHT - PAD + 4}" class="s">0</text>']
    for level in lines:
        parts.append(f'<line x1="{PAD}" y1="{y(level):.1f}" x2="{WIDTH - PAD}" '
                     f'y2="{y(level):.1f}" class="limit"/>')
    for colour, key in zip(COLOURS, keys, strict=False):
        segment: list[str] = []
        for i, point in enumerate(points + [{}]):
            value = point.get(key)
            if value is None:
                if len(segment) > 1:
                    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                                 f'points="{" ".join(segment)}"/>')
                elif segment:
                    cx, cy = segment[0].split(",")
                    parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
                segment = []
            else:
                segment.append(f"{x(i):.1f},{y(float(value)):.1f}")
    legend = "".join(f'<tspan fill="{c}">■ {html.escape(k)} </tspan>'
                     for c, k in zip(COLOURS, keys, strict=False))
    parts.append(f'<text x="{WIDTH - PAD}" y="20" text-anchor="end" class="s">{legend}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _drift_chart(figures: list[dict[str, Any]]) -> str:
    """Horizontal bars: PSI per numeric feature, Jensen-Shannon distance per category."""
    bars = [f for f in figures if f["metric"] in ("psi", "js_distance")
            and f["value"] is not None]
    if not bars:
        return "<p>No drift figures: the build has no reference profile, or no rows.</p>"
    row_h = 22
    height = PAD + row_h * len(bars) + 10
    top = max(0.3, max(f["value"] for f in bars) * 1.1)
    left, right = 220, WIDTH - 20

    def x(v: float) -> float:
        return left + min(v, top) / top * (right - left)

    parts = [f'<svg viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
             'role="img" aria-label="drift per feature">',
             '<text x="4" y="20" class="t">drift per feature (PSI; categories: '
             'Jensen-Shannon distance)</text>']
    for limit, _ in PSI_LEVELS:
        parts.append(f'<line x1="{x(limit):.1f}" y1="28" x2="{x(limit):.1f}" '
                     f'y2="{height - 6}" class="limit"/>'
                     f'<text x="{x(limit) + 2:.1f}" y="36" class="s">{limit}</text>')
    for i, f in enumerate(bars):
        yy = PAD + i * row_h
        label = f"{f['feature']} ({'PSI' if f['metric'] == 'psi' else 'JS'})"
        colour = "#1f77b4" if f["metric"] != "psi" else (  # the PSI levels are PSI's only
            "#d62728" if f["value"] >= PSI_LEVELS[-1][0] else (
                "#ff7f0e" if f["value"] >= PSI_LEVELS[0][0] else "#2ca02c"))
        parts.append(f'<text x="4" y="{yy + 14}" class="s">{html.escape(label[:34])}</text>'
                     f'<rect x="{left}" y="{yy + 3}" width="{x(f["value"]) - left:.1f}" '
                     f'height="{row_h - 8}" fill="{colour}"/>'
                     f'<text x="{x(f["value"]) + 4:.1f}" y="{yy + 14}" class="s">'
                     f'{f["value"]:.3f} (n={f["samples"]})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def render(result: dict[str, Any], points: list[dict[str, Any]]) -> str:
    """The report of a :func:`~icefloe.monitoring.monitor.monitor_deployment` result and
    its :func:`over_time` buckets."""
    e = html.escape
    made = datetime.now(UTC).isoformat(timespec="seconds")
    reference = result.get("reference")
    ref_text = (f"{e(reference['table'])}@{reference['snapshot_id']} "
                f"({e(reference['fingerprint'])})" if reference else "none")
    rows = "".join(
        f"<tr><td>{e(f['metric'])}</td><td>{e(f['feature'])}</td>"
        f"<td>{_number(f['value'])}</td><td>{f['samples']}</td>"
        f"<td class=\"{e(f['status'])}\">{e(f['status'])}</td>"
        f"<td>{e(f.get('reading', ''))}</td></tr>" for f in result["figures"])
    aggregates = "".join(
        f"<tr><td>{a['start_ms']}..{a['end_ms']}</td><td>{e(str(a['metrics']))}</td></tr>"
        for a in result.get("aggregates", []))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>icefloe monitoring: {e(result['deployment'])}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
.insufficient {{ color: #888; }} .t {{ font-size: 14px; font-weight: 600; }}
.s {{ font-size: 11px; fill: #444; }} .axis {{ stroke: #888; }}
.limit {{ stroke: #d62728; stroke-dasharray: 4 3; }}
</style></head><body>
<h1>Deployment {e(result['deployment'])}</h1>
<p>Model {e(result['model'])}/{result['model_version']}, build {e(result['build'])}.
Window {e(result['window'])}: {result['start_ms']} .. {result['end_ms']} (ms since 1970).
Reference: {ref_text}. Minimum samples {result['min_samples']}. Made {made}.</p>
<h2>Accuracy and label coverage over time</h2>
{_line_chart("accuracy and label coverage", points, ["accuracy", "label_coverage"], 1.0)}
<h2>Latency over time</h2>
{_line_chart("latency (ms)", points, ["latency_p50_ms", "latency_p99_ms"])}
<h2>Drift against the training data</h2>
{_drift_chart(result["figures"])}
<h2>Figures</h2>
<table><tr><th>metric</th><th>feature</th><th>value</th><th>samples</th><th>status</th>
<th>reading</th></tr>{rows}</table>
<h2>Aggregate metrics</h2>
<table><tr><th>window (ms)</th><th>metrics</th></tr>{aggregates}</table>
</body></html>
"""
