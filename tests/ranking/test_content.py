"""ContentRecommender: dense and FAISS scoring, known vs encoded users, new items, persistence."""

import json

import numpy as np
import pytest
from blend_world import contract_content
from contract import RecommenderContract

from recsys.index.faiss_index import VectorIndex
from recsys.ranking.base import Query
from recsys.ranking.content import ContentRecommender
from recsys.ranking.user_vectors import HistoryMeanEncoder, history_key
from recsys.vectors import normalize_rows

N_ITEMS, DIM, N_USERS = 80, 8, 12


@pytest.fixture
def item_vectors():
    return normalize_rows(np.random.default_rng(0).normal(size=(N_ITEMS, DIM)))


@pytest.fixture
def user_vectors():
    return normalize_rows(np.random.default_rng(1).normal(size=(N_USERS, DIM)))


class TestContentContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        return contract_content()


class TestContentWithIndexContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        return contract_content(with_index=True)


def _brute_top(user: np.ndarray, items: np.ndarray, k: int, banned=()) -> list[int]:
    scores = items @ user
    scores[list(banned)] = -np.inf
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def test_known_users_use_their_vectors_and_cold_users_are_encoded(item_vectors, user_vectors):
    rec = ContentRecommender(item_vectors, HistoryMeanEncoder(), None, user_vectors)
    history = np.array([3, 7, 11])
    scores = rec.score([Query(user_idx=4, history=history), Query(history=history)])
    np.testing.assert_allclose(scores[0], item_vectors @ user_vectors[4], rtol=1e-5, atol=1e-6)
    mean = item_vectors[history].mean(axis=0)
    np.testing.assert_allclose(
        scores[1], item_vectors @ (mean / np.linalg.norm(mean)), rtol=1e-5, atol=1e-6
    )


class _Counting(HistoryMeanEncoder):
    calls = 0

    def __call__(self, queries, item_vectors):
        self.calls += len(queries)
        return super().__call__(queries, item_vectors)


def test_keyed_user_vectors_serve_only_the_history_they_were_encoded_from(
    item_vectors, user_vectors, tmp_path
):
    histories = [np.arange(u, u + 3, dtype=np.int64) for u in range(N_USERS)]
    keys = np.array([history_key(h) for h in histories], dtype=np.uint64)
    encoder = _Counting()
    rec = ContentRecommender(item_vectors, encoder, None, user_vectors, known_user_keys=keys)
    same = rec.user_vectors([Query(2, histories[2])])
    np.testing.assert_array_equal(same[0], user_vectors[2])  # the stored vector, no encoding
    assert encoder.calls == 0
    longer = np.append(histories[2], 40)  # a request adding a recent item
    older = histories[2][:2]  # an evaluation of an earlier history
    fresh = rec.user_vectors(
        [Query(2, longer), Query(2, older), Query(2, histories[2], "likes jazz")]
    )
    assert encoder.calls == 3
    np.testing.assert_allclose(fresh[0], HistoryMeanEncoder()([Query(2, longer)], item_vectors)[0])
    rec.save(tmp_path)
    loaded = ContentRecommender.load(tmp_path)
    np.testing.assert_array_equal(loaded.known_user_keys, keys)
    np.testing.assert_array_equal(loaded.user_vectors([Query(5, histories[5])])[0], user_vectors[5])
    with pytest.raises(ValueError, match=r"known_user_keys: expected \(12,\)"):
        ContentRecommender(item_vectors, encoder, None, user_vectors, known_user_keys=keys[:3])


def test_history_key_depends_on_items_and_their_order():
    a = history_key(np.array([1, 2, 3]))
    assert a == history_key(np.array([1, 2, 3], dtype=np.int32))
    assert a != history_key(np.array([3, 2, 1])) and a != history_key(np.array([1, 2]))


def test_query_with_nothing_cannot_be_scored(item_vectors):
    rec = ContentRecommender(item_vectors, HistoryMeanEncoder())
    scores = rec.score([Query(), Query(user_idx=3)])  # no precomputed users at all
    assert np.isneginf(scores).all()
    ids, vals = rec.recommend([Query()], k=5)
    assert (ids == -1).all() and np.isneginf(vals).all()


def test_recommend_matches_brute_force_with_exclusions_and_allow_mask(item_vectors, user_vectors):
    rec = ContentRecommender(item_vectors, HistoryMeanEncoder(), None, user_vectors)
    allowed = np.ones(N_ITEMS, dtype=bool)
    allowed[::2] = False  # only odd items
    ids, _ = rec.recommend([Query(user_idx=2)], k=6, exclude=[np.array([1, 3])], allowed=allowed)
    banned = set(range(0, N_ITEMS, 2)) | {1, 3}
    assert ids[0].tolist() == _brute_top(user_vectors[2], item_vectors, 6, banned)


def test_faiss_path_agrees_with_dense_path(item_vectors, user_vectors):
    index = VectorIndex.build(item_vectors)
    dense = ContentRecommender(item_vectors, HistoryMeanEncoder(), None, user_vectors)
    via_index = ContentRecommender(item_vectors, HistoryMeanEncoder(), index, user_vectors, 10)
    queries = [Query(user_idx=u) for u in range(N_USERS)] + [Query(history=np.array([5])), Query()]
    exclude = [np.array([u, u + 1]) for u in range(len(queries))]
    ids_dense, vals_dense = dense.recommend(queries, k=7, exclude=exclude)
    ids_index, vals_index = via_index.recommend(queries, k=7, exclude=exclude)
    np.testing.assert_array_equal(ids_index, ids_dense)
    np.testing.assert_allclose(vals_index, vals_dense, rtol=1e-5, atol=1e-6)
    assert (ids_index[-1] == -1).all()  # nothing to encode: nothing from the index either


@pytest.mark.parametrize("with_index", [False, True])
def test_item_added_with_text_only_is_recommendable_at_once(item_vectors, with_index):
    index = VectorIndex.build(item_vectors) if with_index else None
    rec = ContentRecommender(item_vectors, HistoryMeanEncoder(), index, exact_max_items=10)
    history = np.array([0, 1])
    new_vector = item_vectors[history].mean(axis=0, keepdims=True)  # text "about" the history
    new_idx = rec.add_items(new_vector)
    assert new_idx.tolist() == [N_ITEMS] and rec.n_items == N_ITEMS + 1
    ids, _ = rec.recommend([Query(history=history)], k=3, exclude=[history])
    assert ids[0, 0] == N_ITEMS
    assert rec.similar_items(0, k=N_ITEMS)[0].tolist().count(N_ITEMS) == 1


def test_similar_items_by_cosine_without_the_item_itself(item_vectors):
    rec = ContentRecommender(item_vectors * 3.0, HistoryMeanEncoder())  # scale must not matter
    ids, scores = rec.similar_items(5, k=4)
    assert 5 not in ids
    assert ids.tolist() == _brute_top(item_vectors[5], item_vectors, 4, banned=[5])
    np.testing.assert_allclose(scores, item_vectors[ids] @ item_vectors[5], rtol=1e-5)
    with pytest.raises(IndexError, match="out of range"):
        rec.similar_items(N_ITEMS, k=3)


@pytest.mark.parametrize("with_index", [False, True])
def test_save_load_round_trip_without_pickle(tmp_path, item_vectors, user_vectors, with_index):
    index = VectorIndex.build(item_vectors) if with_index else None
    rec = ContentRecommender(item_vectors, HistoryMeanEncoder(last_n=2), index, user_vectors, 10)
    rec.save(tmp_path / "content")
    loaded = ContentRecommender.load(tmp_path / "content")
    assert isinstance(loaded.user_encoder, HistoryMeanEncoder) and loaded.user_encoder.last_n == 2
    assert (loaded.index is not None) == with_index
    queries = [Query(user_idx=1), Query(history=np.array([4, 9, 20]))]
    for a, b in zip(rec.recommend(queries, 5), loaded.recommend(queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_custom_encoder_must_be_passed_back_on_load(tmp_path, item_vectors):
    def first_item_encoder(queries, vectors):  # a real encoder of the same call shape
        return np.stack([vectors[q.history[0]] for q in queries])

    ContentRecommender(item_vectors, first_item_encoder).save(tmp_path)
    with pytest.raises(ValueError, match="pass user_encoder="):
        ContentRecommender.load(tmp_path)
    loaded = ContentRecommender.load(tmp_path, user_encoder=first_item_encoder)
    ids, _ = loaded.recommend([Query(history=np.array([9]))], k=1)
    assert ids[0, 0] == 9


def test_bad_shapes_are_reported(item_vectors):
    with pytest.raises(ValueError, match=r"known_user_vectors: expected \(n_users, 8\)"):
        ContentRecommender(item_vectors, HistoryMeanEncoder(), None, np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"add_items: expected \(m, 8\)"):
        ContentRecommender(item_vectors, HistoryMeanEncoder()).add_items(np.zeros((2, 3)))
    bad = ContentRecommender(item_vectors, lambda queries, vectors: np.zeros((1, 3)))
    with pytest.raises(ValueError, match="user_encoder returned shape"):
        bad.score([Query(history=np.array([1]))])


def test_two_tower_encoder_is_reattached_from_a_relocated_bundle(tmp_path):
    import torch

    from recsys.config import EncoderConfig
    from recsys.encoder.model import TwoTowerEncoder, build_towers
    from recsys.ranking.user_vectors import TowerUserEncoder

    torch.manual_seed(0)
    config = EncoderConfig(dim=DIM, seq_layers=1, seq_heads=2, history_len=6)
    adapter, tower = build_towers(config, hidden=16, user_tower="sequence")
    # frozen path with a sequence user tower: encoding histories never runs the backbone
    encoder = TwoTowerEncoder(config, adapter, tower, "unused-backbone", "0" * 16, "frozen")
    encoder.save(tmp_path / "bundle" / "encoder")
    features = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    items = encoder.item_vectors_from_features(features)  # (30, DIM)
    rec = ContentRecommender(items, TowerUserEncoder(encoder, tmp_path / "bundle" / "encoder"))
    rec.save(tmp_path / "bundle" / "text")
    meta = json.loads((tmp_path / "bundle" / "text" / "content.json").read_text())
    assert meta["user_encoder"] == {"kind": "two_tower", "dir": "../encoder"}
    (tmp_path / "bundle").rename(tmp_path / "moved")  # a relocated bundle still loads
    loaded = ContentRecommender.load(tmp_path / "moved" / "text")
    assert isinstance(loaded.user_encoder, TowerUserEncoder)
    queries = [Query(history=np.array([1, 4, 7])), Query(history=np.array([2]))]
    np.testing.assert_allclose(loaded.score(queries), rec.score(queries), rtol=1e-5, atol=1e-6)
    assert np.isneginf(loaded.score([Query()])).all()  # nothing to encode


def _bias(n: int) -> np.ndarray:
    """A bias on every third item (the never-interacted ones), zero elsewhere."""
    bias = np.zeros(n, dtype=np.float32)
    bias[::3] = np.random.default_rng(7).normal(scale=0.3, size=bias[::3].shape)
    return bias


class TestContentWithBiasAndIndexContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        rec = contract_content(with_index=True)
        rec.set_item_bias(_bias(rec.n_items))
        return rec


def test_item_bias_is_added_to_every_score_but_not_to_similarity(item_vectors, user_vectors):
    bias = _bias(N_ITEMS)
    rec = ContentRecommender(item_vectors, HistoryMeanEncoder(), None, user_vectors, item_bias=bias)
    scores = rec.score([Query(user_idx=3), Query()])
    np.testing.assert_allclose(scores[0], item_vectors @ user_vectors[3] + bias, atol=1e-6)
    assert np.isneginf(scores[1]).all()  # nothing to encode stays unscorable
    ids, sims = rec.similar_items(4, k=5)
    assert ids.tolist() == _brute_top(item_vectors[4], item_vectors, 5, banned=[4])


def test_biased_faiss_path_agrees_with_dense_path(item_vectors, user_vectors):
    """The index ranks the unbiased items, the biased ones are scored exactly and merged: the
    same top-k as dense scoring, under exclusions and an allow-mask."""
    bias = _bias(N_ITEMS) * 5  # large enough to move biased items past unbiased ones
    index = VectorIndex.build(item_vectors)
    dense = ContentRecommender(
        item_vectors, HistoryMeanEncoder(), None, user_vectors, 1000, None, bias
    )
    via_index = ContentRecommender(
        item_vectors, HistoryMeanEncoder(), index, user_vectors, 10, None, bias
    )
    queries = [Query(user_idx=u) for u in range(N_USERS)] + [Query(history=np.array([5])), Query()]
    exclude = [np.array([u, u + 3]) for u in range(len(queries))]
    allowed = np.ones(N_ITEMS, dtype=bool)
    allowed[1::7] = False
    for mask in (None, allowed):
        ids_dense, vals_dense = dense.recommend(queries, k=9, exclude=exclude, allowed=mask)
        ids_index, vals_index = via_index.recommend(queries, k=9, exclude=exclude, allowed=mask)
        np.testing.assert_array_equal(ids_index, ids_dense)
        np.testing.assert_allclose(vals_index, vals_dense, rtol=1e-5, atol=1e-6)
    assert np.isin(ids_dense[:-1], np.flatnonzero(bias)).any()  # the bias did move items in
    assert (ids_index[-1] == -1).all()


@pytest.mark.parametrize("with_index", [False, True])
def test_bias_survives_save_load_and_new_items(tmp_path, item_vectors, user_vectors, with_index):
    index = VectorIndex.build(item_vectors) if with_index else None
    bias = _bias(N_ITEMS)
    rec = ContentRecommender(
        item_vectors, HistoryMeanEncoder(), index, user_vectors, 10, None, bias
    )
    rec.save(tmp_path / "content")
    loaded = ContentRecommender.load(tmp_path / "content")
    np.testing.assert_array_equal(loaded.item_bias, bias)
    new = loaded.add_items(item_vectors[:2], bias=np.array([0.5, 0.0]))
    np.testing.assert_array_equal(loaded.item_bias, np.concatenate([bias, [0.5, 0.0]]))
    loaded.add_items(item_vectors[:1])  # no bias given: 0, an item of average popularity
    assert loaded.item_bias.shape == (N_ITEMS + 3,) and loaded.item_bias[-1] == 0
    scores = loaded.score([Query(user_idx=0)])[0]
    assert scores[new[0]] == pytest.approx(scores[0] - bias[0] + 0.5, abs=1e-5)
    with pytest.raises(ValueError, match=r"expected bias \(1,\)"):
        loaded.add_items(item_vectors[:1], bias=np.zeros(2))
    with pytest.raises(ValueError, match=r"item_bias: expected \(80,\) finite values"):
        ContentRecommender(item_vectors, HistoryMeanEncoder(), item_bias=np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        ContentRecommender(item_vectors, HistoryMeanEncoder(), item_bias=np.full(N_ITEMS, np.nan))
