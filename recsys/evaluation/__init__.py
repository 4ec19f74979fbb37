"""Evaluation stage: metrics kernel, A/B statistics and verdict, segments, HTML/JSON reports.

metrics.py (per_user_metrics and beyond-accuracy), stats.py, segments.py, compare.py (Comparison,
verdict), evaluate.py (EvalInput, evaluate_ab: the offline core), report.py + plots.py (rendering),
exposures.py (the live A/B report from the API's exposure log).
"""
