"""Benchmark helper (serving stage): checks and prints a soak's answers against its switches
(benchmarks/soak.py). A record is (sent, received, status, bundle, keep-alive); an event is a
reload, rollback (both answered by /admin once every worker serves the target) or a pointer-only
promotion (no answer: each worker takes it on its next check)."""

from __future__ import annotations

import argparse

import numpy as np


def stale_answers(records: list, events: list[dict], first: str) -> list:
    """Answers sent after a switch had answered that name a bundle older than it: a bundle
    neither that switch's target nor the target of an event started before the answer came."""
    switches = sorted((e for e in events if "done" in e), key=lambda e: e["done"])
    stale = []
    for sent, received, status, bundle, _ in records:
        if not 200 <= status < 300:
            continue
        last = [e for e in switches if e["done"] <= sent]
        base = last[-1] if last else None
        allowed = {base["target"] if base else first}
        since = base["start"] if base else -np.inf
        allowed |= {e["target"] for e in events if since < e["start"] <= received}
        if bundle not in allowed:
            stale.append((sent, received, bundle, sorted(allowed)))
    return stale


def in_flight_tail(records: list, event: dict) -> tuple[int, float]:
    """(answers sent before the admin answered, received after, naming another bundle; the
    latest of them, ms after the admin answered)."""
    late = [r for r in records if r[0] < event["done"] < r[1] and r[3] != event["target"]]
    return len(late), max(((r[1] - event["done"]) * 1000.0 for r in late), default=0.0)


def convergence(records: list, event: dict, until: float) -> float:
    """A pointer-only move: seconds from the write to the last request sent (before the next
    event) that still named another bundle."""
    old = [r[0] for r in records if event["start"] <= r[0] < until and r[3] != event["target"]]
    return max(old, default=event["start"]) - event["start"]


def report(records: list, events: list[dict], args: argparse.Namespace) -> int:
    """Print the figures; 0 when every answer was 2xx, every switch answered 200, none stale."""
    sent = np.array([r[0] for r in records])  # (requests,)
    latency = np.array([(r[1] - r[0]) * 1000.0 for r in records])  # (requests,) ms
    statuses = np.array([r[2] for r in records])
    bad = int(((statuses < 200) | (statuses >= 300)).sum())
    span = sent.max() - sent.min()
    print(
        f"load: {args.clients} clients (half keep-alive, half a new connection per request), "
        f"{span:.1f} s, {len(records)} requests ({len(records) / span:.0f}/s); non-2xx or "
        f"failed: {bad}"
    )
    print(
        "\n| # | action | target | admin answered after | workers confirmed |"
        " answers in flight across it naming the old bundle (latest, after the answer) |"
    )
    print("|---|---|---|---|---|---|")
    for n, event in enumerate(events, start=1):
        print(_event_row(n, event, records, events))
    first = next(r[3] for r in sorted(records) if 200 <= r[2] < 300)
    stale = stale_answers(records, events, first)
    print(f"\nstale answers (sent after a switch answered, naming an older bundle): {len(stale)}")
    for row in stale[:5]:
        print(f"  {row}")
    during = np.zeros(len(records), dtype=bool)  # sent while an admin switch was under way
    for event in (e for e in events if "done" in e):
        during |= (sent >= event["start"]) & (sent <= event["done"])
    print(
        f"latency p50 / p99 {np.percentile(latency, 50):.1f} / {_p99(latency):.1f} ms; p99 of "
        f"requests sent while a switch was under way {_p99(latency[during]):.1f} ms "
        f"({during.sum()} requests) vs the others {_p99(latency[~during]):.1f} ms"
    )
    answered = all(e.get("status", 200) == 200 for e in events)
    ok = bad == 0 and not stale and answered
    print(f"result: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _event_row(n: int, event: dict, records: list, events: list[dict]) -> str:
    head = f"| {n} | {event['action']} | {event['target']} |"
    if "done" not in event:  # a pointer-only promotion: no answer, each worker's next check
        until = next((e["start"] for e in events[n:]), np.inf)
        took = convergence(records, event, until)
        return f"{head} none (pointer only): every request sent {took:.2f} s after names it | |  |"
    count, tail = in_flight_tail(records, event)
    workers = event["body"].get("workers", event["body"].get("error"))
    took = event["done"] - event["start"]
    return f"{head} {took:.2f} s ({event['status']}) | {workers} | {count} ({tail:.0f} ms) |"


def _p99(values: np.ndarray) -> float:
    return float(np.percentile(values, 99)) if values.size else float("nan")
