"""Evaluation stage: report figures. Reads a Comparison and per-user arrays; writes PNG images
(matplotlib Agg canvas, no pyplot state) as base64 strings for embedding in the HTML report.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recsys.evaluation.compare import ALL_USERS, Comparison

COLORS = ("#4c72b0", "#dd8452")  # A, B
DPI = 100


def _png(fig: Figure) -> str:
    """Render a figure on an Agg canvas and return it as base64 PNG."""
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _err(mean: float, ci: tuple[float, float]) -> tuple[float, float]:
    """Error-bar lengths below/above a mean; 0 where the CI is missing."""
    low, high = ci
    below = mean - low if low is not None and math.isfinite(low) else 0.0
    above = high - mean if high is not None and math.isfinite(high) else 0.0
    return max(below, 0.0), max(above, 0.0)


def metric_bars(comparison: Comparison) -> str:
    """Mean of every metric over all users, A beside B, with bootstrap CIs."""
    cells = [c for c in comparison.cells if c.segment == ALL_USERS]
    x = np.arange(len(cells))  # (n_metrics,)
    fig = Figure(figsize=(max(4.0, 1.3 * len(cells) + 1.5), 3.2))
    ax = fig.add_subplot()
    for side, name in enumerate((comparison.name_a, comparison.name_b)):
        means = [c.mean_a if side == 0 else c.mean_b for c in cells]
        errs = [_err(m, c.ci_a if side == 0 else c.ci_b) for m, c in zip(means, cells, strict=True)]
        ax.bar(
            x + (side - 0.5) * 0.38,
            means,
            0.38,
            color=COLORS[side],
            label=name,
            yerr=np.array(errs).T,
            capsize=3,
        )
    ax.set_xticks(x, [f"{c.metric}@{comparison.k}" for c in cells])
    ax.set_ylabel(f"mean over {comparison.unit} (95% CI)")
    ax.legend(frameon=False)
    ax.set_title("Metrics, all " + comparison.unit)
    return _png(fig)


def segment_lift(comparison: Comparison, metric: str) -> str:
    """Relative lift B/A - 1 of one metric on every segment, with its bootstrap CI."""
    cells = [c for c in comparison.cells if c.metric == metric]
    fig = Figure(figsize=(6.5, 0.45 * len(cells) + 1.4))
    ax = fig.add_subplot()
    y = np.arange(len(cells))[::-1]  # first segment on top
    lifts = [100 * c.lift if math.isfinite(c.lift) else 0.0 for c in cells]
    errs = [_err(100 * c.lift, (100 * c.lift_ci[0], 100 * c.lift_ci[1])) for c in cells]
    colors = [
        "#1a7f37" if c.significant and c.diff > 0 else "#cf222e" if c.significant else "#8c959f"
        for c in cells
    ]
    ax.barh(y, lifts, color=colors, xerr=np.array(errs).T, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{_short(c.segment)} (n={c.n_users})" for c in cells])
    ax.set_xlabel(f"lift of {comparison.name_b} over {comparison.name_a}, % (95% CI)")
    fig.suptitle(f"{metric}@{comparison.k}: lift per segment (colour: significant)")
    _clip_to_large_segments(ax, cells)
    return _png(fig)


def difference_histogram(differences: np.ndarray, metric: str, comparison: Comparison) -> str:
    """Distribution of the per-user difference B - A of one metric."""
    diff = np.asarray(differences, dtype=np.float64)
    fig = Figure(figsize=(6.0, 3.0))
    ax = fig.add_subplot()
    ax.hist(diff, bins=41, color="#6e7781")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvline(float(diff.mean()) if diff.size else 0.0, color=COLORS[1], label="mean difference")
    ax.set_yscale("symlog")  # most users are usually at 0
    ax.set_xlabel(f"{metric}@{comparison.k}: {comparison.name_b} - {comparison.name_a} per user")
    ax.set_ylabel("users")
    ax.legend(frameon=False)
    ax.set_title("Per-user differences")
    return _png(fig)


def popularity_histogram(recommended_popularity: Mapping[str, np.ndarray]) -> str:
    """Training popularity of the recommended items, one histogram per variant (log bins)."""
    fig = Figure(figsize=(6.0, 3.0))
    ax = fig.add_subplot()
    top = max((float(np.max(v)) for v in recommended_popularity.values() if len(v)), default=1.0)
    bins = np.unique(np.concatenate([[0], np.geomspace(1, max(top, 1.0) + 1, 30)])) - 0.5
    for i, (name, values) in enumerate(recommended_popularity.items()):
        ax.hist(
            np.asarray(values),
            bins=bins,
            histtype="step",
            linewidth=1.6,
            color=COLORS[i % 2],
            label=name,
        )
    ax.set_xscale("symlog")
    ax.set_xlabel("training interactions of a recommended item")
    ax.set_ylabel("recommendations")
    ax.legend(frameon=False)
    ax.set_title("Popularity of recommended items")
    return _png(fig)


def _short(label: str, width: int = 40) -> str:
    """A tick label that leaves the bars room: long names (bundle versions) cut in the middle."""
    return label if len(label) <= width else label[: width // 2 - 1] + "…" + label[-width // 2 :]


def _clip_to_large_segments(ax, cells: list) -> None:
    """Keep the x-range on segments with >= 100 users, so a tiny segment's huge CI does not
    flatten every other bar (its error bar is cut at the edge)."""
    big = [c for c in cells if c.n_users >= 100] or cells
    ends = [
        100 * x for c in big for x in (*c.lift_ci, c.lift) if x is not None and math.isfinite(x)
    ]
    if ends:
        low, high = min(min(ends), 0.0), max(max(ends), 0.0)
        pad = 0.1 * (high - low) or 1.0
        ax.set_xlim(low - pad, high + pad)
