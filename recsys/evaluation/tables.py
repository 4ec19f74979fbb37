"""Evaluation stage: the HTML fragments of the A/B report. Reads Comparison cells, ExampleLists
and plain tables; writes HTML strings (escaped) that recsys.evaluation.report puts on the page.

Numbers are grouped in nowrap spans, text cells wrap between words, and long unbroken tokens
(bundle versions, ids) get break opportunities, so a table shrinks to its column instead of
overflowing it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from html import escape

from recsys.evaluation.compare import Cell, Comparison
from recsys.evaluation.examples import ExampleList


@dataclass
class Table:
    """A plain table for the report (e.g. the live A/B's per-bundle split)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def cells_table(comparison: Comparison, cells: list[Cell], table_id: str = "") -> str:
    """Metric, segment, n, A and B with CIs, lift with CI, every test's p, corrected p."""
    names = (comparison.name_a, comparison.name_b)
    tests = list(dict.fromkeys(t for c in cells for t in c.p_values))
    head = ["metric", "segment", "n", f"{names[0]} [95% CI]", f"{names[1]} [95% CI]"]
    head += ["lift [95% CI]"] + [f"p ({t})" for t in tests] + ["p corrected in family"]
    ident = f" id='{escape(table_id)}'" if table_id else ""
    rows = [f"<table{ident}><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for c in cells:
        tone = "" if not c.significant else " good" if c.diff > 0 else " bad"
        cols = [
            _n(f"{c.metric}@{comparison.k}"),
            text(c.segment),
            _n(str(c.n_users)),
            _with_ci(_num(c.mean_a), _num(c.ci_a[0]), _num(c.ci_a[1])),
            _with_ci(_num(c.mean_b), _num(c.ci_b[0]), _num(c.ci_b[1])),
            _with_ci(_pct(c.lift), _pct(c.lift_ci[0]), _pct(c.lift_ci[1])),
        ]
        cols += [_n(_p(c.p_values.get(t))) for t in tests] + [_n(_p(c.p_adjusted))]
        cls = f" class='sig{tone}'" if c.significant else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{x}</td>" for x in cols) + "</tr>")
    return "".join(rows) + "</table>"


def plain_table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{text(str(x))}</td>" for x in row) + "</tr>" for row in table.rows
    )
    note = f"<p class='meta'>{escape(table.note)}</p>" if table.note else ""
    return f"<h3>{escape(table.title)}</h3>{note}<table><tr>{head}</tr>{body}</table>"


def beyond_table(comparison: Comparison, beyond: dict, overlap: float | None) -> str:
    names = (comparison.name_a, comparison.name_b)
    rows = ["<table><tr><th>measure</th>" + "".join(f"<th>{escape(n)}</th>" for n in names)]
    rows[0] += "</tr>"
    for measure, values in beyond.items():
        cols = "".join(f"<td>{_n(_num(values.get(n)))}</td>" for n in names)
        rows.append(f"<tr><td>{escape(measure)}</td>{cols}</tr>")
    if overlap is not None:
        rows.append(
            f"<tr><td>list overlap A/B (Jaccard)</td><td colspan='2'>{_num(overlap)}</td></tr>"
        )
    return "".join(rows) + "</table>"


def examples_section(examples: list[ExampleList], k: int) -> str:
    """Each sampled user: history titles (latest first) beside each variant's top-k; held-out
    items in the lists are marked."""
    parts = [
        "<h3 id='examples'>Example lists</h3>",
        f"<p class='meta'>{len(examples)} users drawn at random (seeded); items marked "
        "&#10003; are the user's held-out items.</p>",
    ]
    for ex in examples:
        held = ", ".join(ex.held_out)
        parts.append(
            "<article class='example'>"
            f"<h4>user {escape(ex.user_id)} <span class='meta'>{ex.history_total} interactions; "
            f"held out: {escape(held)}</span></h4><div class='cols'>"
        )
        shown = min(len(ex.history), ex.history_total)
        title = f"history (latest {shown} of {ex.history_total})"
        parts.append(_list_column(title, [(t, False) for t in ex.history]))
        for name, items in ex.lists.items():
            parts.append(_list_column(f"{name}: top {k}", items))
        parts.append("</div></article>")
    return "".join(parts)


def _list_column(title: str, items: list[tuple[str, bool]]) -> str:
    lis = "".join(
        f"<li class='hit'>&#10003; {escape(t)}</li>" if hit else f"<li>{escape(t)}</li>"
        for t, hit in items
    )
    return f"<div><h5>{escape(title)}</h5><ol>{lis or '<li>(empty)</li>'}</ol></div>"


_LONG_TOKEN = re.compile(r"\S{25,}")


def text(value: str) -> str:
    """Escaped text whose long unbroken tokens may break every 16 characters (<wbr>)."""
    parts, last = [], 0
    for match in _LONG_TOKEN.finditer(value):
        token = match.group()
        parts.append(escape(value[last : match.start()]))
        parts.append("<wbr>".join(escape(token[i : i + 16]) for i in range(0, len(token), 16)))
        last = match.end()
    return "".join(parts) + escape(value[last:])


def _n(value: str) -> str:
    """A number (or a short name) that must not break across lines."""
    return f"<span class='n'>{escape(value)}</span>"


def _with_ci(value: str, low: str, high: str) -> str:
    return f"{_n(value)} {_n(f'[{low}, {high}]')}"


def _num(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.1%}"


def _p(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"
