"""Evaluation stage: metrics kernel, A/B statistics and verdict, segments, HTML/JSON reports.

metrics.py (per_user_metrics and beyond-accuracy), stats.py, segments.py, compare.py (Comparison,
correction families), verdict.py (the rule), evaluate.py (EvalInput, evaluate_ab: the offline
core), examples.py (sampled users' lists), report.py + tables.py + plots.py (rendering),
exposures.py (reading the API's exposure logs), live.py + live_checks.py (the live A/B report).
"""
