"""Pipeline: the promotion gate — candidate vs champion on the same held-out interactions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from recsys.config import GateConfig


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    rule: str
    reasons: list[str] = field(default_factory=list)
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    config: GateConfig,
    users: int | None = None,
) -> GateDecision:
    """Promote when the candidate was judged on at least `min_users` held-out users (`users`), is
    above every floor and, if there is a champion, its gate metric is not worse than the
    champion's by more than `tolerance` (relative)."""
    metric = config.metric
    rule = (
        f"promote if {metric}(candidate) >= (1 - {config.tolerance:g}) x {metric}(champion)"
        + "".join(f" and {name} >= {floor:g}" for name, floor in sorted(config.floors.items()))
        + f" and >= {config.min_users} evaluation users; the first run promotes"
    )
    if metric not in candidate:
        raise KeyError(
            f"gate metric {metric!r} not among the candidate's metrics {sorted(candidate)}"
        )
    reasons, failed = [], False
    if users is not None and users < config.min_users:
        failed = True
        reasons.append(f"{users} evaluation users is below the minimum {config.min_users}")
    for name, floor in sorted(config.floors.items()):
        if name not in candidate:
            raise KeyError(
                f"gate floor {name!r} not among the candidate's metrics {sorted(candidate)}"
            )
        if candidate[name] < floor:
            failed = True
            reasons.append(f"{name} {candidate[name]:.4f} is below the floor {floor:g}")
    if champion is None:
        reasons.append("no champion yet")
    else:
        bar = (1.0 - config.tolerance) * champion[metric]
        below_bar = candidate[metric] < bar
        failed = failed or below_bar
        verb = "is below" if below_bar else "meets"
        reasons.append(
            f"{metric} {candidate[metric]:.4f} {verb} the bar {bar:.4f} "
            f"(champion {champion[metric]:.4f}, tolerance {config.tolerance:g})"
        )
    return GateDecision(
        not failed, rule, reasons, dict(candidate), None if champion is None else dict(champion)
    )
