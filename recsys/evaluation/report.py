"""Evaluation stage: the A/B report. Reads a Comparison, its Verdict and ReportExtras; writes
out_dir/report.html (self-contained: inline CSS, plots as base64 PNG), out_dir/summary.json (the
same numbers) and, when the extras hold one, out_dir/per_user.parquet (one row per user).

Page order: the verdict with its rule and key numbers, validity warnings, the pre-registered
primary family, figures, then everything exploratory (secondary metrics, segments), example
lists, beyond-accuracy measures.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.evaluation.compare import ALL_USERS, EXPLORATORY, PRIMARY, Comparison
from recsys.evaluation.examples import ExampleList
from recsys.evaluation.tables import (
    Table,
    beyond_table,
    cells_table,
    examples_section,
    plain_table,
)
from recsys.evaluation.verdict import Verdict

DECISION_COLORS = {
    "promote": "#1a7f37",
    "hold": "#cf222e",
    "inconclusive": "#9a6700",
    "no_verdict": "#57606a",
}
REPORT_FILE, SUMMARY_FILE, PER_USER_FILE = "report.html", "summary.json", "per_user.parquet"

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328}
main{max-width:1100px;margin:0 auto;padding:0 24px 48px}
.verdict{color:#fff;padding:20px 24px;margin:0 0 16px}
.verdict h1{font-size:44px;margin:0;letter-spacing:.04em}
.verdict p{font-size:18px;margin:8px 0 0;overflow-wrap:anywhere}
.rule{font-size:14px;opacity:.9}
.warnings{border-left:6px solid #bf8700;background:#fff8c5;padding:8px 16px;margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px;max-width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:right;vertical-align:top}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
.n{white-space:nowrap}
.sig{font-weight:700}.good{color:#1a7f37}.bad{color:#cf222e}
.meta{color:#57606a;font-size:13px;font-weight:400}
figure{display:inline-block;margin:8px 12px 8px 0;max-width:100%}
figure img{max-width:100%;height:auto}
.example{border-top:1px solid #d0d7de;padding:4px 0 8px}
.example h4{margin:8px 0 4px;overflow-wrap:anywhere}
.cols{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:16px}
.cols h5{margin:4px 0;font-size:13px;overflow-wrap:anywhere}
.cols ol{margin:0;padding-left:22px;font-size:13px}
.cols li{overflow-wrap:anywhere}
.hit{color:#1a7f37;font-weight:700}
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
    examples: list[ExampleList] = field(default_factory=list)  # sampled users' lists
    tables: list[Table] = field(default_factory=list)  # more tables (the live per-bundle split)
    per_user: pl.DataFrame | None = None  # written as per_user.parquet
    summary_extra: dict[str, Any] = field(default_factory=dict)  # more JSON-ready numbers

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: everything but the raw per-user arrays, which are summarised."""
        return {
            **self.summary_extra,
            "title": self.title,
            "context": self.context,
            "examples": [asdict(e) for e in self.examples],
            "tables": [asdict(t) for t in self.tables],
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
    """Write report.html, summary.json and per_user.parquet (when extras has a per-user
    table) into out_dir (created); returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    primary = _primary_metric(comparison, verdict)
    figures = _figures(comparison, extras, primary)
    files = [REPORT_FILE, SUMMARY_FILE]
    if extras.per_user is not None:
        extras.per_user.write_parquet(out_dir / PER_USER_FILE)
        files.append(PER_USER_FILE)
    summary = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "verdict": verdict.to_dict(),
        "primary_metric": primary,
        "comparison": comparison.to_dict(),
        **extras.summary(),
        "files": files,
    }
    summary = json.loads(json.dumps(summary, default=_json_default), parse_constant=lambda _: None)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    page = _page(comparison, verdict, extras, figures, files)
    path = out_dir / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


def _figures(comparison: Comparison, extras: ReportExtras, primary: str) -> list[tuple[str, str]]:
    """(title, base64 PNG) of every figure the report shows."""
    from recsys.evaluation import plots  # matplotlib only when a report is drawn

    figures = [("Metrics with 95% CIs", plots.metric_bars(comparison))]
    if len(comparison.segments) > 1:
        figures.append(("Lift per segment", plots.segment_lift(comparison, primary)))
    if primary in extras.differences:
        diff = extras.differences[primary]
        figures.append(
            ("Per-user differences", plots.difference_histogram(diff, primary, comparison))
        )
    if extras.recommended_popularity:
        figures.append(("Popularity", plots.popularity_histogram(extras.recommended_popularity)))
    return figures


def _page(comparison, verdict, extras, figures, files) -> str:
    esc = html.escape
    color = DECISION_COLORS.get(verdict.decision, "#57606a")
    headline, *others = verdict.reasons or [""]
    meta = {
        "variants": f"A = {comparison.name_a}, B = {comparison.name_b}",
        "test": f"{comparison.test}, {comparison.correction} correction within each family, "
        f"alpha {comparison.alpha}",
        "CIs": f"bootstrap, {comparison.n_bootstrap} resamples, seed {comparison.seed}",
        **extras.context,
        "files": ", ".join(files),
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(verdict.label)}: {esc(extras.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header class='verdict' style='background:{color}'>",
        f"<h1 id='verdict'>{esc(verdict.label)}</h1>",
        f"<p>{esc(headline)}</p><p class='rule'>Rule: {esc(verdict.rule)}</p></header><main>",
    ]
    if verdict.warnings:
        parts.append("<section class='warnings' id='warnings'><h3>Warnings</h3><ul>")
        parts += [f"<li>{esc(w)}</li>" for w in verdict.warnings] + ["</ul></section>"]
    parts += [
        f"<h2>{esc(extras.title)}</h2><p class='meta'>",
        "<br>".join(f"{esc(k)}: {esc(str(v))}" for k, v in meta.items()) + "</p>",
        f"<h3>Primary: pre-registered, decides ({esc(comparison.unit)})</h3>",
        cells_table(comparison, comparison.family(PRIMARY), "primary"),
        "<section>",
        *(
            f"<figure><img alt='{esc(t)}' src='data:image/png;base64,{b64}'></figure>"
            for t, b64 in figures
        ),
        "</section>",
    ]
    if others:
        parts.append("<h3>Other significant changes</h3><ul>")
        parts += [f"<li>{esc(r)}</li>" for r in others] + ["</ul>"]
    parts += [plain_table(t) for t in extras.tables]
    parts += _exploratory(comparison)
    if extras.examples:
        parts.append(examples_section(extras.examples, comparison.k))
    if extras.beyond or extras.overlap is not None:
        parts.append("<h3>Beyond accuracy</h3>")
        parts.append(beyond_table(comparison, extras.beyond, extras.overlap))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _exploratory(comparison: Comparison) -> list[str]:
    """Secondary metrics over all users, then segments: exploratory, never deciding."""
    cells = comparison.family(EXPLORATORY)
    note = (
        "<p class='meta'>Exploratory: corrected within the exploratory family "
        f"({sum(1 for c in cells if math.isfinite(c.p_value))} tests), never part of the "
        "decision; a finding here is a lead for the next pre-registered test.</p>"
    )
    secondary = [c for c in cells if c.segment == ALL_USERS]
    segments = [c for c in cells if c.segment != ALL_USERS]
    parts = []
    if secondary:
        parts += [f"<h3>Exploratory: secondary metrics, all {html.escape(comparison.unit)}</h3>"]
        parts += [note, cells_table(comparison, secondary, "secondary")]
    if segments:
        parts += ["<h3>Exploratory: segments</h3>", note]
        parts.append(cells_table(comparison, segments, "segments"))
    return parts


def _primary_metric(comparison: Comparison, verdict: Verdict) -> str:
    return verdict.metric if verdict.metric in comparison.metrics else comparison.metrics[0]


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
