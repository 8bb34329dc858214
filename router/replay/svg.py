"""Small inline SVG charts, so a report is one self-contained HTML file with no plotting library."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Series", "bar_chart", "line_chart", "stacked_bars"]

W, H = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 48
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")


@dataclass
class Series:
    name: str
    x: Sequence[float]
    y: Sequence[float]
    line: bool = True
    labels: Sequence[str] = field(default_factory=tuple)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def _scale(lo: float, hi: float, a: float, b: float) -> tuple[float, float, object]:
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad

    def f(v: float) -> float:
        return a + (v - lo) / (hi - lo) * (b - a)

    return lo, hi, f


def _frame(title: str, x_label: str, y_label: str) -> list[str]:
    return [
        f'<svg viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" role="img" aria-label="{escape(title)}" font-family="sans-serif" '
        'font-size="11">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="bold">{escape(title)}</text>',
        f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="14" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2})">{escape(y_label)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
        'fill="none" stroke="#9ca3af"/>',
    ]


def _ticks(lo: float, hi: float, f: object, axis: str) -> list[str]:
    assert callable(f)
    out = []
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        p = f(v)
        if axis == "x":
            out.append(
                f'<text x="{p:.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">{_fmt(v)}</text>'
            )
        else:
            out.append(f'<text x="{LEFT - 4}" y="{p + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    return out


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str) -> str:
    # A point without a finite value cannot be drawn: drop it rather than the chart.
    series = [Series(s.name, *_finite(s.x, s.y), line=s.line, labels=s.labels) for s in series]
    series = [s for s in series if s.x]
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in s.y]
    parts = _frame(title, x_label, y_label)
    if not xs:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    x_lo, x_hi, fx = _scale(min(xs), max(xs), LEFT, W - RIGHT)
    y_lo, y_hi, fy = _scale(min(ys), max(ys), H - BOTTOM, TOP)
    assert callable(fx) and callable(fy)
    parts += _ticks(x_lo, x_hi, fx, "x") + _ticks(y_lo, y_hi, fy, "y")
    for k, s in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = [(fx(x), fy(y)) for x, y in zip(s.x, s.y, strict=True)]
        if s.line and len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}"/>')
        for j, (x, y) in enumerate(pts):
            tip = s.labels[j] if j < len(s.labels) else f"{s.name}"
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{3 if s.line else 5}" fill="{color}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        # Bottom right: the curves here rise from bottom left to top right.
        legend_y = H - BOTTOM - 6 - 13 * (len(series) - 1 - k)
        parts.append(
            f'<text x="{W - RIGHT - 4}" y="{legend_y}" text-anchor="end" '
            f'fill="{color}">{escape(s.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def bar_chart(title: str, edges: Sequence[float], counts: Sequence[int], x_label: str) -> str:
    parts = _frame(title, x_label, "records")
    if not counts or len(edges) != len(counts) + 1:
        parts.append("</svg>")
        return "".join(parts)
    x_lo, x_hi, fx = _scale(edges[0], edges[-1], LEFT, W - RIGHT)
    _, y_hi, fy = _scale(0, max(max(counts), 1), H - BOTTOM, TOP)
    assert callable(fx) and callable(fy)
    parts += _ticks(x_lo, x_hi, fx, "x") + _ticks(0, y_hi, fy, "y")
    base = fy(0)
    for k, c in enumerate(counts):
        x0, x1 = fx(edges[k]), fx(edges[k + 1])
        y = fy(c)
        parts.append(
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
            f'height="{max(base - y, 0):.1f}" fill="{PALETTE[0]}"><title>'
            f"{_fmt(edges[k])}-{_fmt(edges[k + 1])}: {c}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(title: str, rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    """One horizontal 0-100% bar per row, split by key (e.g. share per upstream)."""
    height = TOP + 36 * len(rows) + 44
    keys = sorted({k for _, shares in rows for k in shares})
    parts = [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" font-family="sans-serif" '
        'font-size="11">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    span = W - 120 - RIGHT
    for r, (label, shares) in enumerate(rows):
        y = TOP + 36 * r
        parts.append(f'<text x="112" y="{y + 18}" text-anchor="end">{escape(label)}</text>')
        x = 120.0
        for k, key in enumerate(keys):
            width = span * shares.get(key, 0.0)
            if width <= 0:
                continue
            color = PALETTE[k % len(PALETTE)]
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="26" fill="{color}">'
                f"<title>{escape(key)}: {shares[key]:.1%}</title></rect>"
            )
            if width > 40:
                parts.append(
                    f'<text x="{x + width / 2:.1f}" y="{y + 17}" text-anchor="middle" '
                    f'fill="white">{escape(key)} {shares[key]:.0%}</text>'
                )
            x += width
    for k, key in enumerate(keys):
        parts.append(
            f'<rect x="{120 + 90 * k}" y="{height - 28}" width="10" height="10" '
            f'fill="{PALETTE[k % len(PALETTE)]}"/><text x="{134 + 90 * k}" '
            f'y="{height - 19}">{escape(key)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
