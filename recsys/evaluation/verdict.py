"""Evaluation stage: the A/B verdict. Reads a Comparison; writes a Verdict with its rule.

The rule (`rule_text`), on the pre-registered primary metric over all users, its p-value corrected
within the primary family only (recsys.evaluation.compare):
  promote       if lift B/A - 1 > min_lift and p < alpha (B better);
  hold          if B is significantly worse;
  inconclusive  otherwise: no significant difference, or a significant gain below min_lift.
no_verdict: the experiment failed a validity check (a sample ratio mismatch in the live A/B), so
no difference between the groups can be trusted and none is declared. Exploratory cells never
decide; their significant changes are listed as exploratory findings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.config import EvalConfig
from recsys.evaluation.compare import ALL_USERS, PRIMARY, Cell, Comparison

DECISIONS = ("promote", "hold", "inconclusive", "no_verdict")


@dataclass
class Verdict:
    decision: str  # one of DECISIONS
    rule: str
    reasons: list[str]  # the first one explains the decision with the key numbers
    metric: str = ""  # the primary metric the decision is about
    warnings: list[str] = field(default_factory=list)  # validity problems worth a look

    @property
    def label(self) -> str:
        """'NO VERDICT', 'PROMOTE', ... as shown on the report."""
        return self.decision.replace("_", " ").upper()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rule_text(config: EvalConfig, comparison: Comparison) -> str:
    """The verdict rule in words, printed beside the verdict."""
    metric = f"{config.primary_metric}@{comparison.k}"
    n = len(comparison.family(PRIMARY))
    test = (
        f"{comparison.test}, {comparison.correction}-corrected within the pre-registered primary "
        f"family of {n} test{'s' if n != 1 else ''}; other metrics and segments are exploratory"
    )
    return (
        f"promote if lift({metric}) of {comparison.name_b} over {comparison.name_a} "
        f"> {config.min_lift:+.1%} and p < {config.alpha} ({test}); "
        f"hold if {comparison.name_b} is significantly worse on {metric}; otherwise inconclusive"
    )


def verdict(comparison: Comparison, config: EvalConfig) -> Verdict:
    """Apply the rule (module docstring) to the primary metric over all users."""
    cell = comparison.cell(config.primary_metric, ALL_USERS)
    better, worse = cell.diff > 0, cell.diff < 0
    if cell.significant and worse:
        decision, why = "hold", f"{comparison.name_b} is significantly worse"
    elif cell.significant and better and cell.lift > config.min_lift:
        decision, why = "promote", f"{comparison.name_b} is significantly better"
    elif cell.significant and better:
        decision = "inconclusive"
        why = f"significant gain, but lift {_pct(cell.lift)} <= min_lift {config.min_lift:+.1%}"
    else:
        decision = "inconclusive"
        why = f"no significant difference (p = {cell.p_adjusted:.3g} >= alpha {config.alpha})"
    reasons = [f"{why}. {_summary(comparison, cell)}"]
    reasons += _other_findings(comparison, cell)
    rule = rule_text(config, comparison)
    return Verdict(decision=decision, rule=rule, reasons=reasons, metric=cell.metric)


def withheld(comparison: Comparison, config: EvalConfig, why: str, warnings: list[str]) -> Verdict:
    """No verdict: a validity check failed (`why` says which, with its numbers). The primary
    metric's figures are still quoted, for diagnosis, but decide nothing."""
    cell = comparison.cell(config.primary_metric, ALL_USERS)
    reasons = [
        f"{why}. Not a decision, for diagnosis only: {_summary(comparison, cell)}",
    ]
    return Verdict(
        decision="no_verdict",
        rule=rule_text(config, comparison),
        reasons=reasons,
        metric=cell.metric,
        warnings=list(warnings),
    )


def _summary(comparison: Comparison, cell: Cell) -> str:
    return (
        f"{cell.metric}@{comparison.k}: {comparison.name_a} {cell.mean_a:.4f} -> "
        f"{comparison.name_b} {cell.mean_b:.4f}, lift {_pct(cell.lift)} "
        f"[{_pct(cell.lift_ci[0])}, {_pct(cell.lift_ci[1])}], p = {cell.p_adjusted:.3g} "
        f"({comparison.correction}, primary family), n = {cell.n_users} {comparison.unit}"
    )


def _other_findings(comparison: Comparison, primary: Cell, max_gains: int = 5) -> list[str]:
    """Significant changes elsewhere, each within its own family: every regression (they
    deserve a look even on promote), then the strongest gains."""
    found = [c for c in comparison.cells if c.significant and c is not primary]
    found.sort(key=lambda c: (c.family != PRIMARY, c.p_adjusted))
    worse = [c for c in found if c.diff < 0]
    better = [c for c in found if c.diff > 0]
    lines = [_finding("regression", c, comparison.k) for c in worse]
    lines += [_finding("gain", c, comparison.k) for c in better[:max_gains]]
    if len(better) > max_gains:
        lines.append(f"... and {len(better) - max_gains} more significant gains (see the tables)")
    return lines


def _finding(kind: str, c: Cell, k: int) -> str:
    return (
        f"{kind} ({c.family}): {c.metric}@{k} on {c.segment} {c.mean_a:.4f} -> {c.mean_b:.4f} "
        f"(lift {_pct(c.lift)}, p = {c.p_adjusted:.3g} within the {c.family} family)"
    )


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.1%}"
