"""ALSModel: fold-in equals implicit's recalculate_user, npz round trip, determinism."""

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from recsys.collab.als_model import ALSModel
from recsys.collab.factors import ARRAYS_FILE
from recsys.config import CollabConfig

CONFIG = CollabConfig(model="als", factors=6, iterations=5, threads=1)


def interactions(n_users=25, n_items=15, seed=0):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    dense[:, -1] = 0.0  # the last item has no interactions
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("alpha", [1.0, 4.0])
def test_fold_in_equals_implicit_recalculate_user(alpha):
    config = CONFIG.model_copy(update={"alpha": alpha, "regularization": 0.3})
    model = ALSModel.fit(interactions(), config)
    reference = AlternatingLeastSquares(
        factors=6, regularization=0.3, alpha=alpha, iterations=1, num_threads=1, random_state=0
    )
    reference.fit(interactions(), show_progress=False)
    reference.item_factors = model.item_factors.copy()  # score against our fitted items
    reference.user_factors = model.user_factors.copy()
    history = np.array([2, 5, 5, 9])  # item 5 twice: confidence 2 * alpha
    row = sp.csr_matrix((np.array([1.0, 2.0, 1.0], np.float32), ([0, 0, 0], [2, 5, 9])), (1, 15))
    expected = reference.recalculate_user(0, row)
    np.testing.assert_allclose(model.fold_in([history])[0], expected, rtol=1e-4, atol=1e-5)


def test_untrained_items_and_users_are_flagged():
    dense = interactions().toarray()
    dense[4] = 0.0
    model = ALSModel.fit(sp.csr_matrix(dense), CONFIG)
    assert not model.item_trained[-1] and model.item_trained[:-1].all()
    assert not model.user_trained[4] and model.user_trained.sum() == 24
    # an untrained item can not enter a fold-in: it has no learned vector
    np.testing.assert_array_equal(model.fold_in([np.array([0, 14])]), model.fold_in([[0]]))


def test_save_load_and_determinism(tmp_path):
    model = ALSModel.fit(interactions(), CONFIG)
    again = ALSModel.fit(interactions(), CONFIG)
    np.testing.assert_array_equal(model.item_factors, again.item_factors)
    model.save(tmp_path)
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as data:
        loaded = ALSModel.from_arrays(CONFIG, {name: data[name] for name in data.files})
    users = np.arange(model.n_users)
    np.testing.assert_array_equal(loaded.score_users(users), model.score_users(users))
    np.testing.assert_array_equal(loaded.fold_in([[1, 2]]), model.fold_in([[1, 2]]))
