"""Synthetic sample generator: input contract, determinism, and a learnable text and CF signal."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys.config import DataConfig, SplitConfig, TextConfig
from recsys.data import load_dataset
from recsys.data.sample import NEW_FRACTION, START, YEAR, generate_sample, main
from recsys.data.sample_vocabulary import STYLES, SUBTOPICS_PER_TOPIC, TOPICS
from recsys.data.split import restrict_to_cold_items, split_interactions
from recsys.evaluation.metrics import per_user_metrics
from recsys.schema import ITEM_IDX, USER_IDX
from recsys.text.documents import item_documents

COMMITTED = Path(__file__).resolve().parents[2] / "data" / "sample"
SMALL = {"n_users": 120, "n_items": 150, "mean_interactions": 15.0}
K = 10


def _read(directory: Path) -> dict[str, pl.DataFrame]:
    names = ("items", "users", "interactions")
    return {name: pl.read_csv(directory / f"{name}.csv") for name in names}


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("*.csv")}


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small")
    generate_sample(out, seed=3, **SMALL)
    return out


@pytest.fixture(scope="module")
def medium_dir(tmp_path_factory) -> Path:
    """Big enough that hit rates are not noise, small enough to stay fast (~20k interactions)."""
    out = tmp_path_factory.mktemp("medium")
    generate_sample(out, seed=1, n_users=800, n_items=1000, mean_interactions=25.0)
    return out


def test_same_seed_gives_byte_identical_files(small_dir, tmp_path):
    generate_sample(tmp_path / "again", seed=3, **SMALL)
    generate_sample(tmp_path / "other", seed=4, **SMALL)
    assert _digests(tmp_path / "again") == _digests(small_dir)
    other = _digests(tmp_path / "other")
    assert all(other[name] != digest for name, digest in _digests(small_dir).items())


def test_tables_follow_the_input_contract(small_dir):
    tables = _read(small_dir)
    items, users, interactions = tables["items"], tables["users"], tables["interactions"]
    assert items.columns == ["item_id", "title", "description", "categories"]
    assert users.columns == ["user_id", "profile"]
    assert interactions.columns == ["user_id", "item_id", "timestamp", "weight"]
    assert items.height == SMALL["n_items"] and users.height == SMALL["n_users"]
    assert items["item_id"].str.contains(r"^i\d{5}$").all() and items["item_id"].is_unique().all()
    assert users["user_id"].str.contains(r"^u\d{4}$").all() and users["user_id"].is_unique().all()
    assert interactions["item_id"].is_in(items["item_id"].implode()).all()
    assert interactions["user_id"].is_in(users["user_id"].implode()).all()
    assert interactions["timestamp"].dtype == pl.Int64
    assert (
        interactions["timestamp"].min() >= START and interactions["timestamp"].max() < START + YEAR
    )
    assert (interactions["weight"] > 0).all()
    per_user = interactions.group_by("user_id").len()["len"]
    assert per_user.len() == SMALL["n_users"] and per_user.min() >= 3


def test_item_text_comes_from_the_item_topics(small_dir):
    items = _read(small_dir)["items"]
    subtopics = {(t.name, s.name): s for t in TOPICS for s in t.subtopics}
    topic_names = {t.name for t in TOPICS}
    styles = [sentence for style in STYLES for sentence in style]
    n_mixed = n_styled = 0
    for title, description, categories in items.select("title", "description", "categories").rows():
        cats = categories.split("|")
        assert (cats[0], cats[1]) in subtopics, categories
        n_mixed += len(cats) == 3
        assert len(cats) == 2 or (cats[2] in topic_names and cats[2] != cats[0])
        text = f"{title} {description}".lower()
        assert any(noun in text for noun in subtopics[cats[0], cats[1]].nouns), (title, description)
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", description)) <= 3, description
        n_styled += any(sentence in description.lower() for sentence in styles)
    assert 0.1 * items.height < n_mixed < 0.4 * items.height  # about a quarter mix two topics
    assert 0.6 * items.height < n_styled < 0.95 * items.height  # most say their style


def test_some_users_have_a_profile_naming_their_interests(small_dir):
    tables = _read(small_dir)
    profiles = tables["users"]["profile"]
    assert 0 < profiles.null_count() < profiles.len()
    interests = [s.interest for t in TOPICS for s in t.subtopics]
    for profile in profiles.drop_nulls():
        assert any(interest in profile for interest in interests), profile


def test_cold_items_have_text_and_no_interactions(small_dir):
    tables = _read(small_dir)
    items, interactions = tables["items"], tables["interactions"]
    cold = items.filter(~pl.col("item_id").is_in(interactions["item_id"].implode()))
    # 10% reserved; a few more unpopular ones may go unpicked by chance
    assert round(0.1 * items.height) <= cold.height <= 0.2 * items.height
    assert (cold["title"].str.len_chars() > 0).all()
    assert (cold["description"].str.len_chars() > 0).all()


def test_a_few_interactions_are_repeated_later(small_dir):
    interactions = _read(small_dir)["interactions"]
    repeats = interactions.filter(pl.len().over("user_id", "item_id") > 1)
    n_pairs = repeats.select("user_id", "item_id").unique().height
    assert 0 < n_pairs < 0.1 * interactions.height
    assert (repeats.group_by("user_id", "item_id").agg(pl.col("timestamp").n_unique())[
        "timestamp"] > 1).all()  # fmt: skip


def test_bad_sizes_are_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"n_items must be >= 32 .*found 10"):
        generate_sample(tmp_path, n_items=10)
    with pytest.raises(ValueError, match=r"cold_fraction must be in \[0, 0.5\], found 0.9"):
        generate_sample(tmp_path, cold_fraction=0.9)
    assert not any(tmp_path.iterdir())  # nothing written


def test_command_line_writes_the_three_files(tmp_path, capsys):
    assert (
        main(["--out", str(tmp_path / "s"), "--seed", "2", "--users", "30", "--items", "40"]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "interactions.csv",
        "items.csv",
        "users.csv",
    ]
    assert "interactions.csv" in capsys.readouterr().out


def test_every_topic_has_its_subtopics_and_enough_words():
    assert len({t.name for t in TOPICS}) == len(TOPICS) >= 12
    for topic in TOPICS:
        assert len(topic.subtopics) == SUBTOPICS_PER_TOPIC, topic.name
        assert len({s.name for s in topic.subtopics}) == SUBTOPICS_PER_TOPIC, topic.name
        for sub in topic.subtopics:
            assert len(set(sub.nouns)) >= 3 and sub.interest, (topic.name, sub.name)


# --- the signal: the same leave-last-one-out protocol the benchmarks use ----------------------


def _held_out(directory: Path):
    """(dataset, train matrix (n_users, n_items) 0/1, test users, their held-out item_idx)."""
    dataset = load_dataset(directory, DataConfig())  # repeats collapse to their last time
    split = split_interactions(dataset.interactions, SplitConfig(n_test=1, n_valid=0))
    train = dataset.interaction_matrix(split.train)
    train.data[:] = 1.0
    test = split.test.sort(USER_IDX)  # users with >= 2 interactions have exactly one test item
    return dataset, train.tocsr(), test[USER_IDX].to_numpy(), test[ITEM_IDX].to_numpy()


def _hit_rate(scores: np.ndarray, train: sp.csr_matrix, users, held_out) -> float:
    scores = np.where(train[users].toarray() > 0, -np.inf, scores)  # (n_test, n_items)
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    relevant = [np.array([i]) for i in held_out]
    return float(per_user_metrics(ranked, relevant, K, ["hit_rate"])["hit_rate"].mean())


def _tfidf(docs: list[str]) -> sp.csr_matrix:
    """(n_items, vocab) L2-normalised TF-IDF over lower-case words."""
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for row, doc in enumerate(docs):
        for word in re.findall(r"[a-z]+", doc.lower()):
            rows.append(row)
            cols.append(vocabulary.setdefault(word, len(vocabulary)))
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(docs), len(vocabulary)))
    df = np.bincount(counts.indices, minlength=len(vocabulary))  # documents per word
    weighted = sp.csr_matrix(counts.multiply(np.log(len(docs) / df)[None, :]))
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
    return sp.csr_matrix(weighted.multiply(1.0 / np.maximum(norms, 1e-12)[:, None]))


@pytest.fixture(scope="module")
def scores(medium_dir) -> dict:
    dataset, train, users, held_out = _held_out(medium_dir)
    history = train[users]  # (n_test, n_items)
    tfidf = _tfidf(item_documents(dataset, TextConfig()))
    popularity = np.asarray(train.sum(axis=0)).ravel()  # (n_items,)
    cooc = (train.T @ train).toarray()  # (n_items, n_items) item-kNN, cosine
    np.fill_diagonal(cooc, 0.0)
    norm = np.sqrt(np.maximum(popularity, 1.0))
    n_candidates = dataset.n_items - np.asarray(history.sum(axis=1)).ravel()
    return {
        "args": (train, users, held_out),
        "random": float(np.mean(K / n_candidates)),  # the exact expectation of random ranking
        "popularity": np.tile(popularity, (len(users), 1)),
        "text": (history @ tfidf @ tfidf.T).toarray(),
        "collab": np.asarray(history @ (cooc / norm[:, None] / norm[None, :])),
    }


def _z(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(axis=1, keepdims=True)) / (a.std(axis=1, keepdims=True) + 1e-12)


def _auc(scores: np.ndarray, train: sp.csr_matrix, users, held_out) -> float:
    """Mean share of the candidates ranked below the held-out item (ties count half): far less
    noisy than a hit rate, 0.5 for random scores."""
    scores = np.where(train[users].toarray() > 0, np.nan, scores)  # (n_test, n_items)
    target = scores[np.arange(len(users)), held_out][:, None]  # (n_test, 1)
    above = np.nansum(scores > target, axis=1) + 0.5 * (np.nansum(scores == target, axis=1) - 1)
    return float(1.0 - np.mean(above / (np.isfinite(scores).sum(axis=1) - 1)))


def test_item_text_predicts_the_held_out_item(scores):
    text = _hit_rate(scores["text"], *scores["args"])
    popularity = _hit_rate(scores["popularity"], *scores["args"])
    assert text > 5 * scores["random"]
    assert text > 1.5 * popularity
    assert _auc(scores["text"], *scores["args"]) > _auc(scores["popularity"], *scores["args"])


def test_collaborative_signal_goes_beyond_the_text(scores):
    """Hidden item clusters: co-occurrence adds what text + popularity cannot see."""
    text_pop = _z(scores["text"]) + 0.3 * _z(np.log1p(scores["popularity"]))
    with_collab = text_pop + _z(scores["collab"])
    assert _auc(with_collab, *scores["args"]) > _auc(text_pop, *scores["args"]) + 0.01
    assert _hit_rate(with_collab, *scores["args"]) > _hit_rate(text_pop, *scores["args"])
    collab = _hit_rate(scores["collab"], *scores["args"])
    assert collab > 1.5 * _hit_rate(scores["popularity"], *scores["args"])


def test_new_releases_are_cold_in_a_time_split(medium_dir):
    """Items released during the year give a time-cut split test items absent from train."""
    dataset = load_dataset(medium_dir, DataConfig())
    cut = SplitConfig(method="time_cut", time_cut=str(START + int(0.6 * YEAR)), n_valid=0)
    cold = restrict_to_cold_items(split_interactions(dataset.interactions, cut)).test
    # releases are uniform over 0.3-0.9 of the year: half of them come after the cut
    assert cold[ITEM_IDX].n_unique() >= 0.3 * NEW_FRACTION * dataset.n_items


# --- the committed sample ------------------------------------------------------------------------


def test_committed_sample_is_small_and_loads():
    paths = [COMMITTED / f"{name}.csv" for name in ("items", "users", "interactions")]
    assert sum(p.stat().st_size for p in paths) <= 6_000_000
    dataset = load_dataset(COMMITTED, DataConfig())
    assert (dataset.n_items, dataset.n_users) == (3000, 2000)
    assert 60_000 <= dataset.interactions.height <= 100_000
    assert dataset.item_text_columns == ["title", "description", "categories"]
    warm = dataset.interactions[ITEM_IDX].n_unique()
    assert 0.08 * dataset.n_items <= dataset.n_items - warm <= 0.15 * dataset.n_items


@pytest.mark.slow
def test_committed_sample_is_what_the_command_writes(tmp_path):
    main(["--out", str(tmp_path), "--seed", "0"])
    assert _digests(tmp_path) == _digests(COMMITTED)


def test_same_seed_gives_the_same_files_with_numpy_simd_kernels_disabled(small_dir, tmp_path):
    """numpy picks sort and math kernels by CPU (AVX-512, AVX2, baseline); the sample once came out
    different on an AVX-512 machine. Regenerate with every dispatched feature switched off."""
    probe = "from numpy._core._multiarray_umath import __cpu_dispatch__ as d, __cpu_features__ as f"
    found = subprocess.run(
        [sys.executable, "-c", probe + "; print(' '.join(x for x in d if f.get(x)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not found:
        pytest.fail("this CPU has no dispatched SIMD feature above numpy's baseline to switch off")
    code = (
        "import sys; from pathlib import Path; from recsys.data.sample import generate_sample; "
        f"generate_sample(Path(sys.argv[1]), seed=3, n_users={SMALL['n_users']}, "
        f"n_items={SMALL['n_items']}, mean_interactions={SMALL['mean_interactions']})"
    )
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(found)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True)
    assert _digests(tmp_path) == _digests(small_dir)
