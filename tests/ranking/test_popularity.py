"""PopularityRecommender: the shared contract, hand-counted popularity, co-occurrence."""

import numpy as np
import pytest
import scipy.sparse as sp
from contract import RecommenderContract, contract_matrix

from recsys.ranking.base import Query
from recsys.ranking.popularity import PopularityRecommender


class TestPopularityContract(RecommenderContract):
    def make_recommender(self, tmp_path):
        return PopularityRecommender.fit(contract_matrix())


def _matrix(rows):
    """rows: per user, the item_idx they interacted with; 5 items."""
    dense = np.zeros((len(rows), 5), dtype=np.float32)
    for user, items in enumerate(rows):
        dense[user, items] = 1.0
    return sp.csr_matrix(dense)


def test_counts_users_per_item_and_ranks_them_for_everyone():
    rec = PopularityRecommender.fit(_matrix([[0, 2], [2, 3], [2, 3, 4], [3]]))
    assert rec.popularity.tolist() == [1, 0, 3, 3, 1]
    idx, val = rec.recommend([Query(user_idx=0), Query()], 3)
    assert idx.tolist() == [[2, 3, 0], [2, 3, 0]]  # tie 2/3 and 0/4 broken by lower item_idx
    assert val[0].tolist() == [3.0, 3.0, 1.0]


def test_repeated_weights_count_once():
    matrix = _matrix([[1], [1]]) * 4.0  # a user's weight 4 is still one user
    assert PopularityRecommender.fit(matrix).popularity[1] == 2.0


def test_fit_rejects_negative_weights_naming_the_user():
    matrix = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, -2.0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"weights >= 0.*-2.0.*user rows \[1\]"):
        PopularityRecommender.fit(matrix)


def test_similar_items_by_co_occurrence_then_popularity():
    # item 0 shares two users with item 1 and one with item 4; 2 and 3 are popular but unrelated
    rec = PopularityRecommender.fit(_matrix([[0, 1], [0, 1, 4], [2, 3], [2, 3], [2, 3]]))
    idx, val = rec.similar_items(0, 4)
    assert idx.tolist() == [1, 4, 2, 3]
    assert val[0] > val[1] > val[2] >= val[3]
