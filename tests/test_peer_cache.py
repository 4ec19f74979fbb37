"""benchmarks/peer_cache.py: SASRec-CE lists trained on another machine are used only for the
rounds they were made from. A real SASRec fit (one epoch, CPU) on the bundled sample, through the
script's own command line, read back the way published_quality.py --peer-cache reads it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The benchmark modules (they import each other by plain name), off sys.path afterwards."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield {n: importlib.import_module(n) for n in ("peer_cache", "peers", "outside_in")}
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def sample_rounds(bench):
    variant = bench["outside_in"].load_variant(REPO / "data", "sample", max_users=300)
    return variant, bench["peers"].Rounds.of(variant)


def test_ragged_round_trip(bench):
    pc = bench["peer_cache"]
    arrays = [np.array([3, 1]), np.zeros(0, dtype=np.int64), np.array([7])]
    values, offsets = pc.ragged(arrays)
    assert offsets.tolist() == [0, 2, 2, 3]
    assert [a.tolist() for a in pc.unragged(values, offsets)] == [[3, 1], [], [7]]


@pytest.mark.slow
def test_lists_trained_by_the_script_are_read_back_only_for_their_rounds(
    bench, sample_rounds, tmp_path
):
    pc = bench["peer_cache"]
    variant, rounds = sample_rounds
    arrays = pc.rounds_arrays(rounds, variant.sparse)
    np.savez(tmp_path / "sample.npz", **arrays, fingerprint=np.array(pc.fingerprint(arrays)))
    command = [sys.executable, str(BENCHMARKS / "peer_cache.py"), "sasrec", "--dir", str(tmp_path)]
    run = subprocess.run(
        [*command, "--seeds", "0", "--max-epochs", "1"], capture_output=True, text=True, cwd=REPO
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "sample-sasrec.npz").is_file()

    found, where = pc.cached_sasrec(tmp_path, "sample", rounds, variant.sparse, [0])
    assert found is not None, where
    ranked, info = found
    test = rounds.test
    assert ranked[0].shape == (len(test.queries), pc.K)
    assert info[0]["seed"] == 0 and info[0]["epochs"] == 1 and info[0]["device"] == "cpu"
    for row, seen in zip(ranked[0], test.exclude, strict=True):  # REST items never listed
        assert not set(row.tolist()) & set(seen.tolist())
    scored = bench["peers"].cached_sasrec_seeds(tmp_path, variant, rounds, [0], lambda m: None)
    assert scored is not None and scored[0][0]["ndcg"].shape == (len(test.queries),)

    missing, why = pc.cached_sasrec(tmp_path, "sample", rounds, variant.sparse, [0, 1])
    assert missing is None and "seeds [1] missing" in why

    # one interaction fewer in the tuning split: other rounds, so the lists are not used
    shorter = type(rounds)(
        rounds.train.slice(1), rounds.valid, rounds.test, rounds.n_users, rounds.n_items
    )
    stale, why = pc.cached_sasrec(tmp_path, "sample", shorter, variant.sparse, [0])
    assert stale is None and "made from other rounds" in why
    assert bench["peers"].cached_sasrec_seeds(tmp_path, variant, shorter, [0], print) is None


def test_a_missing_file_says_so(bench, sample_rounds, tmp_path):
    variant, rounds = sample_rounds
    found, why = bench["peer_cache"].cached_sasrec(tmp_path, "sample", rounds, False, [0])
    assert found is None and why == f"no {tmp_path / 'sample-sasrec.npz'}"
    assert isinstance(rounds.train, pl.DataFrame)
