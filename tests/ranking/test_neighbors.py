"""NeighborsRecommender: the shared contract, hand-computed RP3beta weights, top-N cut, history
fold-in, cold items, save/load, and a nightly that blends and publishes the source."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from contract import RecommenderContract, contract_matrix
from support import build_test_bundle, dense_and_retrieved

from recsys import bundle
from recsys.config import NeighborsConfig
from recsys.ranking.base import Query
from recsys.ranking.model import RecommenderModel
from recsys.ranking.neighbors import NeighborsRecommender, rp3beta_weights


class TestNeighborsContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        return NeighborsRecommender.fit(contract_matrix())


def _world() -> sp.csr_matrix:
    """4 users x 4 items: u0 {0, 1}, u1 {0, 1, 2}, u2 {2}, u3 {1, 2}; item 3 never seen.
    Users' degrees 2, 3, 1, 2; items' degrees 2, 3, 3, 0."""
    dense = np.zeros((4, 4), dtype=np.float32)
    for user, items in enumerate([[0, 1], [0, 1, 2], [2], [1, 2]]):
        dense[user, items] = 1.0
    return sp.csr_matrix(dense)


# W[i, j] = sum_u (x_ui / deg_i)^a (x_uj / deg_u)^a / deg_j^b, by hand for a = 1, b = 0:
# W[0,1] = u0 1/2*1/2 + u1 1/2*1/3 = 5/12   W[0,2] = u1 1/2*1/3 = 1/6
# W[1,0] = u0 1/3*1/2 + u1 1/3*1/3 = 5/18   W[1,2] = u1 1/3*1/3 + u3 1/3*1/2 = 5/18
# W[2,0] = u1 1/3*1/3 = 1/9                 W[2,1] = u1 1/3*1/3 + u3 1/3*1/2 = 5/18
P3 = np.array(
    [[0, 5 / 12, 1 / 6, 0], [5 / 18, 0, 5 / 18, 0], [1 / 9, 5 / 18, 0, 0], [0, 0, 0, 0]],
)


def test_walk_weights_by_hand():
    weights = rp3beta_weights(_world(), NeighborsConfig(alpha=1.0, beta=0.0)).toarray()
    np.testing.assert_allclose(weights, P3, rtol=1e-6)


def test_beta_divides_by_the_neighbours_popularity():
    weights = rp3beta_weights(_world(), NeighborsConfig(alpha=1.0, beta=1.0)).toarray()
    np.testing.assert_allclose(weights[:, :3], P3[:, :3] / np.array([2, 3, 3]), rtol=1e-6)


def test_alpha_powers_each_step_of_the_walk():
    weights = rp3beta_weights(_world(), NeighborsConfig(alpha=0.5, beta=0.0)).toarray()
    # W[0,1] = sqrt(1/2 * 1/2) + sqrt(1/2 * 1/3); W[2,0] = sqrt(1/3 * 1/3)
    assert weights[0, 1] == pytest.approx(0.5 + 1 / np.sqrt(6), rel=1e-6)
    assert weights[2, 0] == pytest.approx(1 / 3, rel=1e-6)


def test_each_item_keeps_its_top_n_neighbours():
    # beta = 1 breaks row 1's tie: W[1,0] = 5/36 > W[1,2] = 5/54
    rec = NeighborsRecommender.fit(_world(), NeighborsConfig(top_n=1, alpha=1.0, beta=1.0))
    assert rec.weights.getnnz(axis=1).tolist() == [1, 1, 1, 0]
    assert rec.weights.toarray().argmax(axis=1)[:3].tolist() == [1, 0, 1]
    np.testing.assert_allclose(
        rec.weights.toarray()[[0, 1, 2], [1, 0, 1]], [5 / 36, 5 / 36, 5 / 54]
    )


def test_a_history_sums_its_items_rows_for_known_and_unknown_users_alike():
    rec = NeighborsRecommender.fit(_world(), NeighborsConfig(alpha=1.0, beta=0.0, recency=1.0))
    history = np.array([0, 2, 2, -1, 99])  # repeats count once; unknown ids are dropped
    scores = rec.score([Query(1, history), Query(-1, history), Query(500, history)])
    expected = np.array([1 / 9, 5 / 12 + 5 / 18, 1 / 6], dtype=np.float32)
    for row in scores:  # a known user, an unknown one, one beyond the trained users
        np.testing.assert_allclose(row[:3], expected, rtol=1e-6)
    idx, _ = rec.recommend([Query(-1, np.array([0]))], 3, exclude=[np.array([0])])
    assert idx.tolist() == [[1, 2, -1]]  # the cold item is never recommended


def test_fit_reads_weights_as_binary_and_leaves_the_callers_matrix_alone():
    counts = _world().astype(np.float32)
    counts.data[:] = 3.0  # repeated interactions
    rec = NeighborsRecommender.fit(counts, NeighborsConfig(alpha=1.0, beta=0.0))
    np.testing.assert_allclose(rec.weights.toarray(), P3, rtol=1e-6)
    assert (counts.data == 3.0).all()


def test_newer_history_items_count_more():
    """recency r: a history item's row counts r ** (newer items after it); a repeat counts at its
    newest. History 0, 2, 2 (then unknown ids): item 2 is the newest (age 0), item 0 has age 2."""
    r = 0.5
    rec = NeighborsRecommender.fit(_world(), NeighborsConfig(alpha=1.0, beta=0.0, recency=r))
    scores = rec.score([Query(-1, np.array([0, 2, 2, -1, 99])), Query(-1, np.array([2, 0]))])
    expected = [
        [1 / 9, r**2 * 5 / 12 + 5 / 18, r**2 * 1 / 6],  # 0, 2, 2: rows W[2] + r^2 W[0]
        [r * 1 / 9, 5 / 12 + r * 5 / 18, 1 / 6],  # 2, 0: rows W[0] + r W[2]
    ]
    np.testing.assert_allclose(scores[:, :3], np.array(expected, dtype=np.float32), rtol=1e-6)


def test_cold_items_and_queries_without_a_usable_history_score_minus_inf():
    rec = NeighborsRecommender.fit(_world())
    scores = rec.score([Query(0, np.array([0, 1])), Query(), Query(-1, np.array([3]))])
    assert np.isneginf(scores[:, 3]).all()  # item 3 never had an interaction
    assert np.isneginf(scores[1]).all()  # nothing to go on (profile-only and empty queries)
    assert np.isneginf(scores[2]).all()  # only a cold item: nothing to walk from
    idx, val = rec.similar_items(3, 2)
    assert idx.tolist() == [-1, -1] and np.isneginf(val).all()


def test_save_load_round_trip_without_pickle(tmp_path):
    rec = NeighborsRecommender.fit(contract_matrix(), NeighborsConfig(top_n=5, alpha=0.7))
    rec.save(tmp_path / "n")
    with np.load(tmp_path / "n" / "neighbors.npz", allow_pickle=False) as arrays:
        assert arrays["trained"].dtype == bool
    loaded = NeighborsRecommender.load(tmp_path / "n")
    assert loaded.config == rec.config
    assert (loaded.weights != rec.weights).nnz == 0
    queries = [Query(-1, np.array([0, 5])), Query(3, np.array([7]))]
    np.testing.assert_array_equal(loaded.score(queries), rec.score(queries))
    meta = json.loads((tmp_path / "n" / "neighbors.json").read_text())
    del meta["config"]["recency"]  # a bundle saved before recency existed
    (tmp_path / "n" / "neighbors.json").write_text(json.dumps(meta))
    assert NeighborsRecommender.load(tmp_path / "n").config.recency == 1.0  # as it was fitted


def test_load_names_what_is_missing_or_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="neighbors.npz"):
        NeighborsRecommender.load(tmp_path)
    NeighborsRecommender.fit(_world()).save(tmp_path)
    meta = json.loads((tmp_path / "neighbors.json").read_text())
    (tmp_path / "neighbors.json").write_text(json.dumps({**meta, "kind": "popularity"}))
    with pytest.raises(ValueError, match="kind 'popularity'"):
        NeighborsRecommender.load(tmp_path)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="top_n"):
        NeighborsConfig(top_n=0)
    with pytest.raises(ValueError, match="alpha"):
        NeighborsConfig(alpha=0.0)


ALL_FOUR = ["text", "collab", "popularity", "neighbors"]


@pytest.mark.slow
def test_the_nightly_learns_its_weight_and_publishes_it(tmp_path):
    """Blended (the default), the nightly fits the source, the weight search includes it and
    the bundle serves it: answers carry sources.neighbors."""
    build_test_bundle(tmp_path / "learned", blend={"sources": ALL_FOUR})
    ranker_dir = bundle.current_bundle(tmp_path / "learned") / "ranker"
    weights = json.loads((ranker_dir / "weights.json").read_text())
    assert set(weights["default"]) == set(ALL_FOUR)
    assert (ranker_dir / "neighbors" / "neighbors.npz").is_file()

    fixed = {"text": 0.4, "collab": 0.2, "popularity": 0.1, "neighbors": 0.3}
    build_test_bundle(tmp_path / "fixed", blend={"sources": ALL_FOUR, "fixed_weights": fixed})
    model = RecommenderModel.load(bundle.current_bundle(tmp_path / "fixed"))
    assert model.ranker.names == ALL_FOUR
    user = model.users.to_id(0)
    for answer in (
        model.recommend(user_id=user, k=5),  # precomputed at publish
        model.recommend(user_id=user, k=5, exclude=[]),
        model.recommend(item_ids=[model.item_map.to_id(0), model.item_map.to_id(1)], k=5),
    ):
        assert answer["items"], answer
        for item in answer["items"]:  # a number for every item with interactions, None for cold
            cold = item["sources"]["popularity"] == 0
            assert (item["sources"]["neighbors"] is None) == cold, answer
        assert any(i["sources"]["neighbors"] for i in answer["items"]), answer
    profile_only = model.recommend(profile_text="space adventure", k=5)
    assert all(i["sources"]["neighbors"] is None for i in profile_only["items"])


@pytest.mark.slow
def test_retrieval_path_ranks_as_the_dense_path(tmp_path):
    """A catalog past text's exact_max_items takes the retrieval path (each source's top-N):
    with neighbors blended it ranks as the dense path does."""
    fixed = {"text": 0.4, "collab": 0.2, "popularity": 0.1, "neighbors": 0.3}
    build_test_bundle(tmp_path / "var", blend={"sources": ALL_FOUR, "fixed_weights": fixed})
    ranker = RecommenderModel.load(bundle.current_bundle(tmp_path / "var")).ranker
    dense, retrieved = dense_and_retrieved(ranker)
    np.testing.assert_array_equal(retrieved.item_idx, dense.item_idx)
    np.testing.assert_allclose(
        retrieved.source_scores["neighbors"], dense.source_scores["neighbors"], rtol=1e-5
    )
    assert np.isfinite(dense.source_scores["neighbors"]).any()


@pytest.mark.slow
def test_left_out_of_blend_sources_it_is_neither_fitted_nor_served(tmp_path):
    build_test_bundle(tmp_path / "var", blend={"sources": ["text", "collab", "popularity"]})
    ranker_dir = bundle.current_bundle(tmp_path / "var") / "ranker"
    assert not (ranker_dir / "neighbors").exists()
    assert set(json.loads((ranker_dir / "weights.json").read_text())["default"]) == {
        "text",
        "collab",
        "popularity",
    }
