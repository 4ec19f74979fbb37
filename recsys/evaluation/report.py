"""Evaluation stage: the A/B report. Reads a Comparison, its Verdict and ReportExtras; writes
out_dir/report.html (self-contained: inline CSS, plots as base64 PNG) and out_dir/summary.json
(the same numbers). The verdict, its rule and the key numbers are the first thing on the page.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.evaluation.compare import ALL_USERS, Cell, Comparison, Verdict

DECISION_COLORS = {"promote": "#1a7f37", "hold": "#cf222e", "inconclusive": "#9a6700"}
REPORT_FILE, SUMMARY_FILE = "report.html", "summary.json"

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328}
main{max-width:1100px;margin:0 auto;padding:0 24px 48px}
.verdict{color:#fff;padding:20px 24px;margin:0 0 16px}
.verdict h1{font-size:44px;margin:0;letter-spacing:.04em}
.verdict p{font-size:18px;margin:8px 0 0}
.rule{font-size:14px;opacity:.9}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
th,td{border-bottom:1px solid #d0d7de;padding:4px 10px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
.sig{font-weight:700}.good{color:#1a7f37}.bad{color:#cf222e}
.meta{color:#57606a;font-size:13px}
figure{display:inline-block;margin:8px 12px 8px 0}
"""


@dataclass
class ReportExtras:
    """What the report shows besides the comparison (all optional)."""

    title: str = "A/B evaluation"
    context: dict[str, str] = field(default_factory=dict)  # shown under the verdict
    beyond: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> {variant: value}
    overlap: float | None = None  # mean Jaccard overlap of A's and B's lists
    differences: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (n_users,) B - A
    recommended_popularity: dict[str, np.ndarray] = field(default_factory=dict)  # variant -> (m,)

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: everything but the raw per-user arrays, which are summarised."""
        return {
            "title": self.title,
            "context": self.context,
            "beyond_accuracy": self.beyond,
            "list_overlap": self.overlap,
            "per_user_differences": {m: _diff_summary(d) for m, d in self.differences.items()},
            "recommended_popularity": {
                name: _distribution(v) for name, v in self.recommended_popularity.items()
            },
        }


def render_html(
    comparison: Comparison, verdict: Verdict, extras: ReportExtras, out_dir: str | Path
) -> Path:
    """Write report.html and summary.json into out_dir (created); returns the HTML path."""
    from recsys.evaluation import plots  # matplotlib only when a report is drawn

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    primary = _primary_metric(comparison, verdict)
    figures = [("Metrics with 95% CIs", plots.metric_bars(comparison))]
    figures.append(("Lift per segment", plots.segment_lift(comparison, primary)))
    if primary in extras.differences:
        diff = extras.differences[primary]
        figures.append(
            ("Per-user differences", plots.difference_histogram(diff, primary, comparison))
        )
    if extras.recommended_popularity:
        figures.append(("Popularity", plots.popularity_histogram(extras.recommended_popularity)))
    summary = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "verdict": verdict.to_dict(),
        "primary_metric": primary,
        "comparison": comparison.to_dict(),
        **extras.summary(),
    }
    summary = json.loads(json.dumps(summary, default=_json_default), parse_constant=lambda _: None)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    page = _page(comparison, verdict, extras, primary, figures)
    path = out_dir / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


def _page(comparison, verdict, extras, primary, figures) -> str:
    esc = html.escape
    color = DECISION_COLORS.get(verdict.decision, "#57606a")
    headline, *others = verdict.reasons or [""]
    meta = {
        "variants": f"A = {comparison.name_a}, B = {comparison.name_b}",
        "test": f"{comparison.test}, {comparison.correction} correction, alpha {comparison.alpha}",
        "CIs": f"bootstrap, {comparison.n_bootstrap} resamples, seed {comparison.seed}",
        **extras.context,
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(verdict.decision.upper())}: {esc(extras.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header class='verdict' style='background:{color}'>",
        f"<h1 id='verdict'>{esc(verdict.decision.upper())}</h1>",
        f"<p>{esc(headline)}</p><p class='rule'>Rule: {esc(verdict.rule)}</p></header><main>",
        f"<h2>{esc(extras.title)}</h2><p class='meta'>",
        "<br>".join(f"{esc(k)}: {esc(str(v))}" for k, v in meta.items()) + "</p>",
    ]
    parts.append("<h3>All " + esc(comparison.unit) + "</h3>")
    parts.append(_table(comparison, [c for c in comparison.cells if c.segment == ALL_USERS]))
    parts.append("<section>")
    parts += [
        f"<figure><img alt='{esc(t)}' src='data:image/png;base64,{b64}'></figure>"
        for t, b64 in figures
    ]
    parts.append("</section>")
    if others:
        parts.append("<h3>Other significant changes</h3><ul>")
        parts += [f"<li>{esc(r)}</li>" for r in others] + ["</ul>"]
    if extras.beyond or extras.overlap is not None:
        parts.append("<h3>Beyond accuracy</h3>" + _beyond_table(comparison, extras))
    segment_cells = [c for c in comparison.cells if c.segment != ALL_USERS]
    if segment_cells:
        parts.append("<h3>Segments</h3>" + _table(comparison, segment_cells))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _table(comparison: Comparison, cells: list[Cell]) -> str:
    names = (comparison.name_a, comparison.name_b)
    tests = list(dict.fromkeys(t for c in cells for t in c.p_values))
    head = ["metric", "segment", "n", f"{names[0]} [95% CI]", f"{names[1]} [95% CI]"]
    head += ["lift [95% CI]"] + [f"p ({t})" for t in tests] + ["p corrected"]
    rows = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for c in cells:
        tone = "" if not c.significant else " good" if c.diff > 0 else " bad"
        cols = [
            f"{c.metric}@{comparison.k}",
            c.segment,
            str(c.n_users),
            f"{_num(c.mean_a)} [{_num(c.ci_a[0])}, {_num(c.ci_a[1])}]",
            f"{_num(c.mean_b)} [{_num(c.ci_b[0])}, {_num(c.ci_b[1])}]",
            f"{_pct(c.lift)} [{_pct(c.lift_ci[0])}, {_pct(c.lift_ci[1])}]",
        ]
        cols += [_p(c.p_values.get(t)) for t in tests] + [_p(c.p_adjusted)]
        cls = f" class='sig{tone}'" if c.significant else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(x)}</td>" for x in cols) + "</tr>")
    return "".join(rows) + "</table>"


def _beyond_table(comparison: Comparison, extras: ReportExtras) -> str:
    names = (comparison.name_a, comparison.name_b)
    rows = ["<table><tr><th>measure</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names)]
    for measure, values in extras.beyond.items():
        cols = "".join(f"<td>{_num(values.get(n))}</td>" for n in names)
        rows.append(f"<tr><td>{html.escape(measure)}</td>{cols}</tr>")
    if extras.overlap is not None:
        rows.append(
            f"<tr><td>list overlap A/B (Jaccard)</td><td colspan='2'>{_num(extras.overlap)}"
        )
    return "".join(rows) + "</table>"


def _primary_metric(comparison: Comparison, verdict: Verdict) -> str:
    return verdict.metric if verdict.metric in comparison.metrics else comparison.metrics[0]


def _num(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.1%}"


def _p(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


def _diff_summary(diff: np.ndarray) -> dict[str, float]:
    diff = np.asarray(diff, dtype=np.float64)
    n = max(diff.size, 1)
    return {
        "mean": float(diff.mean()) if diff.size else math.nan,
        "share_better": float((diff > 0).sum() / n),
        "share_equal": float((diff == 0).sum() / n),
        "share_worse": float((diff < 0).sum() / n),
    }


def _distribution(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return {"n": 0}
    q = np.quantile(values, [0.1, 0.5, 0.9])
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "p10": q[0],
        "p50": q[1],
        "p90": q[2],
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"summary.json: cannot serialise {type(value).__name__}")
