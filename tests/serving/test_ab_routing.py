"""A/B routing: salted-hash assignment is deterministic, uniform and follows the shares."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from recsys.serving.routing import VariantRouter, bucket


def test_bucket_is_sha256_of_salt_plus_user_id():
    digest = hashlib.sha256(b"pepper" + b"user-42").digest()
    assert bucket("pepper", "user-42") == int.from_bytes(digest[:8], "big") / 2.0**64
    assert 0.0 <= bucket("pepper", "user-42") < 1.0


def test_assignment_is_deterministic_across_processes():
    users = [f"u{i}" for i in range(50)]
    router = VariantRouter({"CURRENT": 0.5, "CHALLENGER": 0.5}, salt="s")
    here = [router.assign(u) for u in users]
    code = (
        "from recsys.serving.routing import VariantRouter;"
        "r = VariantRouter({'CURRENT': 0.5, 'CHALLENGER': 0.5}, salt='s');"
        f"print(','.join(r.assign(f'u{{i}}') for i in range({len(users)})))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert there.split(",") == here  # new process, new hash seed: same answer


def test_buckets_are_uniform():
    values = np.array([bucket("salt", f"user-{i}") for i in range(20_000)])
    assert stats.kstest(values, "uniform").pvalue > 0.001


def test_shares_are_respected_and_salt_reshuffles():
    router = VariantRouter({"CURRENT": 0.7, "CHALLENGER": 0.3}, salt="a")
    users = [f"user-{i}" for i in range(20_000)]
    first = [router.assign(u) for u in users]
    observed = [first.count("CURRENT"), first.count("CHALLENGER")]
    assert stats.chisquare(observed, [14_000, 6_000]).pvalue > 0.001
    other = VariantRouter({"CURRENT": 0.7, "CHALLENGER": 0.3}, salt="b")
    moved = sum(a != other.assign(u) for a, u in zip(first, users, strict=True))
    # independent salts: a user changes variant with probability 2 * 0.7 * 0.3 = 0.42
    assert stats.binomtest(moved, len(users), 0.42).pvalue > 0.001


def test_shares_are_normalised_and_order_defines_intervals():
    router = VariantRouter({"CURRENT": 1, "CHALLENGER": 3}, salt="x")
    assert router.shares == {"CURRENT": 0.25, "CHALLENGER": 0.75}
    for i in range(200):
        user = f"u{i}"
        expected = "CURRENT" if bucket("x", user) < 0.25 else "CHALLENGER"
        assert router.assign(user) == expected


def test_no_variants_means_one_current_variant_and_anonymous_goes_to_control():
    router = VariantRouter({}, salt="x")
    assert router.names == ["CURRENT"]
    assert router.assign("anyone") == "CURRENT"
    two = VariantRouter({"CHALLENGER": 0.5, "CURRENT": 0.5}, salt="x")
    assert two.assign(None) == "CHALLENGER"  # the first listed variant is the control


@pytest.mark.parametrize(
    "variants, message",
    [
        ({"CURRENT": 0.0}, "share must be > 0"),
        ({"CURRENT": -1.0, "CHALLENGER": 2.0}, "share must be > 0"),
        ({"CURRENT": float("nan")}, "share must be > 0"),
        ({"../etc": 1.0}, "neither a pointer"),
    ],
)
def test_bad_variants_are_refused_with_the_key(variants, message):
    with pytest.raises(ValueError, match=message):
        VariantRouter(variants, salt="x")
