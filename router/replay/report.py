"""Write a replay's `report.json`, `changes.jsonl` and a self-contained `report.html`."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from router.replay.engine import ReplayResult
from router.replay.svg import Series, bar_chart, line_chart, stacked_bars

__all__ = ["render_html", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1180px;color:#111}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d1d5db;padding:.25rem .6rem;
text-align:right}th{background:#f3f4f6}td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.note{color:#4b5563;font-size:.9rem}
pre.diff{background:#f9fafb;border:1px solid #d1d5db;padding:.6rem;overflow-x:auto}
"""


def _num(v: object, fmt: str = "{:.4g}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return fmt.format(v)
    return escape(str(v))


def _table(head: list[str], rows: list[list[object]]) -> str:
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_num(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _summary_rows(report: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name in ("baseline", "candidate"):
        s = report[name]
        rows.append(
            [
                f"{name} ({report['compared_with']})" if name == "baseline" else name,
                s["cost_usd"],
                s["cost_per_1k_usd"],
                s["quality"],
                f"{s['quality_coverage']:.1%}",
                s["quality_paired"],
                *(f"{s['share'].get(u, 0.0):.1%}" for u in report["upstreams"]),
            ]
        )
    oracle = report.get("oracle")
    if oracle:
        rows.append(
            [
                "oracle (paired records)",
                oracle["cost_usd"],
                None,
                oracle["quality"],
                "-",
                oracle["quality"],
                *(f"{oracle['share'].get(u, 0.0):.1%}" for u in report["upstreams"]),
            ]
        )
    return rows


def _threshold_label(point: dict[str, Any]) -> str:
    """A threshold as a score and as the share of traffic at or above it."""
    text = f"threshold {point['threshold']:.4g}"
    if point.get("top_percent") is not None:
        text += f" = top {point['top_percent']:.0f}% of these records"
    if point.get("table_top_percent") is not None:
        text += f" (top {point['table_top_percent']:.0f}% of the quantile table)"
    return text


def _sweep_table(report: dict[str, Any]) -> str:
    sweep = report.get("sweep")
    if not sweep:
        return ""
    strong = report["strong"]
    written = sweep.get("written") or {}
    said = ", ".join(f"{k}: {v:g}" for k, v in written.items() if v is not None)
    rows = [
        [
            p["threshold"],
            p.get("top_percent"),
            p.get("table_top_percent"),
            f"{p['share'].get(strong, 0.0):.1%}",
            p["cost_per_1k_usd"],
            p["quality_paired"],
            "current" if p["threshold"] == sweep["current"] else "",
        ]
        for p in sweep["points"]
    ]
    return (
        f"<h2>Threshold sweep of '{escape(sweep['rule'])}' ({escape(sweep['op'])} "
        f"{sweep['current']:.4g}{escape(' = ' + said) if said else ''})</h2>"
        + _table(
            [
                "score threshold",
                "top % of records",
                "top % of table",
                f"share {strong}",
                "USD / 1k req",
                "quality (paired)",
                "",
            ],
            rows,
        )
    )


def _sweep_plot(report: dict[str, Any]) -> str:
    sweep = report.get("sweep")
    if not sweep:
        return ""
    pts = sweep["points"]
    has_quality = any(p["quality_paired"] is not None for p in pts)
    key = "quality_paired" if has_quality else None
    strong = report["strong"]
    xs = [p["cost_per_1k_usd"] for p in pts]
    ys = [p[key] if key else p["share"].get(strong, 0.0) * 100 for p in pts]
    labels = [_threshold_label(p) for p in pts]
    keep = [i for i, y in enumerate(ys) if y is not None]
    series = [
        Series(
            f"sweep of '{sweep['rule']}'",
            [xs[i] for i in keep],
            [ys[i] for i in keep],
            labels=[labels[i] for i in keep],
        )
    ]
    current = [p for p in pts if p["threshold"] == sweep["current"]]
    if current and (y := current[0][key] if key else None) is not None:
        series.append(
            Series(
                f"candidate ({sweep['op']} {sweep['current']:.4g})",
                [current[0]["cost_per_1k_usd"]],
                [y],
                line=False,
            )
        )
    base = report["baseline"]
    if key and base["quality_paired"] is not None:
        series.append(Series("baseline", [base["cost_per_1k_usd"]], [base[key]], line=False))
    y_label = "mean quality (paired records)" if key else f"% routed to {strong}"
    return line_chart("Cost vs quality over thresholds", series, "USD per 1k requests", y_label)


def _eval_plot(report: dict[str, Any]) -> str:
    ev = report.get("eval") or {}
    if not ev:
        return ""
    series = []
    for group, m in ev.items():
        lo, hi = m["weak_quality"], m["strong_quality"]
        span = (hi - lo) or 1.0
        # Normalised to the weak-strong gap, so groups on different scales share one plot.
        ys = [(y - lo) / span for y in m["curve"]["y"]]
        series.append(Series(f"{group} (APGR {m['apgr']:.3f})", m["curve"]["x"], ys))
    return line_chart(
        "Quality/cost curve at the 11 score quantiles",
        series,
        f"% routed to {report['strong']}",
        "performance gap recovered",
    )


def _interval(iv: dict[str, Any] | None, scale: float = 1.0, fmt: str = "{:+.3f}") -> str:
    if not iv:
        return "-"
    text = fmt.format(iv["value"] * scale)
    if iv.get("low") is not None:
        text += f" ({fmt.format(iv['low'] * scale)} .. {fmt.format(iv['high'] * scale)})"
    return text


def _advice_section(advice: dict[str, Any] | None) -> str:
    """What `router advise` recommends, with every candidate's figures and the diff."""
    if not advice:
        return ""
    verdict = {
        "step": "Recommended next step",
        "not_enough_labels": "Not enough labels",
        "hold": "Hold: no step is safe enough",
        "done": "Nothing left to move",
    }.get(advice["verdict"], advice["verdict"])
    rows = []
    for c in advice["candidates"]:
        q = c["quality_change"] or {}
        cov = c["coverage"]
        rows.append(
            [
                c["title"],
                f"{c['moved_share']:.1%}",
                _interval(c["cost_change"]["relative"], 100.0, "{:+.1f}%"),
                _interval(q.get("moved")),
                _interval(q.get("per_request")),
                f"{cov['rated']} / {cov['reach']}",
                "yes" if c["safe"] else "no",
            ]
        )
    parts = [
        f"<h2>Advice: {escape(verdict)}"
        + (f": {escape(advice['recommended'])}" if advice.get("recommended") else "")
        + "</h2>",
        "<ul>" + "".join(f"<li>{escape(t)}</li>" for t in advice["todo"]) + "</ul>",
        f"<p class='note'>Cost: served plus shadow spend; quality: change in label points "
        f"per moved request and per request overall; 5-95% bootstrap intervals "
        f"({advice['options']['bootstrap']} resamples). A step needs "
        f"{advice['options']['min_labels']} rated requests among those it can move, and a "
        f"5% bound above -{advice['options']['max_drop']:g} per moved request.</p>",
        _table(
            [
                "candidate step",
                "moves",
                "cost change",
                "quality / moved request",
                "quality / request",
                "rated / reach",
                "safe",
            ],
            rows,
        ),
    ]
    if advice.get("diff"):
        parts.append(f"<pre class='diff'>{escape(advice['diff'])}</pre>")
    return "".join(parts)


def render_html(report: dict[str, Any], title: str = "Replay report") -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _intro(report),
        _advice_section(report.get("advice")),
        "<h2>Summary</h2>",
        _table(
            [
                "",
                "cost USD",
                "USD / 1k req",
                "quality",
                "coverage",
                "quality (paired)",
                *(f"share {u}" for u in report["upstreams"]),
            ],
            _summary_rows(report),
        ),
        _plots(report),
        _sweep_table(report),
        _eval_section(report),
        _changes_section(report),
        _labels_section(report),
        "<h2>Assumptions</h2><ul>",
        *(f"<li>{escape(a)}</li>" for a in report.get("assumptions", [])),
        "</ul></body></html>",
    ]
    return "".join(parts)


def _intro(report: dict[str, Any]) -> str:
    baseline = report.get("baseline_policy")
    return (
        f"<p class='note'>{report['records']} records; candidate "
        f"<code>{escape(str(report.get('policy', '')))}</code>, compared with "
        f"{escape(report['compared_with'])}"
        + (f" <code>{escape(str(baseline))}</code>" if baseline else "")
        + ".</p>"
    )


def _plots(report: dict[str, Any]) -> str:
    shares = [
        ("baseline", report["baseline"]["share"]),
        ("candidate", report["candidate"]["share"]),
    ] + ([("oracle", report["oracle"]["share"])] if report.get("oracle") else [])
    return "".join(
        [
            "<h2>Plots</h2><div class='plots'>",
            _sweep_plot(report),
            stacked_bars("Share per route", shares),
            bar_chart(
                "Score histogram",
                report["histogram"]["edges"],
                report["histogram"]["counts"],
                "classifier score",
            ),
            _eval_plot(report),
            "</div>",
        ]
    )


def _eval_section(report: dict[str, Any]) -> str:
    ev = report.get("eval") or {}
    if not ev:
        return ""
    return "<h2>Routing metrics per group (router eval definitions)</h2>" + _table(
        ["group", "n", "APGR", "CPT(20%)", "CPT(50%)", "CPT(80%)", "ties"],
        [
            [g, m["n"], m["apgr"], m["cpt20"], m["cpt50"], m["cpt80"], m["ties"]]
            for g, m in ev.items()
        ],
    )


def _changes_section(report: dict[str, Any]) -> str:
    ch = report["changes"]
    parts = [
        f"<h2>Changed routes: {ch['count']} ({ch['share']:.1%})</h2>",
        _table(["from -> to", "requests"], [[k, v] for k, v in ch["by_pair"].items()]),
    ]
    if ch["sample"]:
        parts.append(
            _table(
                ["request", "before", "after", "rule", "score"],
                [
                    [c["request_id"], c["before"], c["after"], c["rule"], c["score"]]
                    for c in ch["sample"]
                ],
            )
        )
    return "".join(parts)


def _labels_section(report: dict[str, Any]) -> str:
    lab = report["labels"]
    return "<h2>Labels</h2>" + _table(
        ["labelled", "coverage", "paired", "feedback entries", "shadow pairs"],
        [
            [
                lab["labelled_records"],
                f"{lab['coverage']:.1%}",
                lab["paired_records"],
                lab["feedback_entries"],
                lab["shadow_pairs"],
            ]
        ],
    )


def write_report(result: ReplayResult, out: str | Path, title: str = "Replay report") -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result.report, indent=2) + "\n")
    with open(out / "changes.jsonl", "w", encoding="utf-8") as fh:
        for change in result.changes:
            fh.write(json.dumps(change) + "\n")
    (out / "report.html").write_text(render_html(result.report, title), encoding="utf-8")
    return out
