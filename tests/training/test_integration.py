"""Integration: the packaged MiniLM trained briefly on a generated catalog beats zero-shot MiniLM,
and a training run is recorded in a real MLflow store."""

import numpy as np
import pytest
from support import small_sample

from recsys.config import EncoderConfig, SplitConfig, TextConfig
from recsys.data.loaders import load_dataset
from recsys.data.split import split_interactions
from recsys.encoder.features import Featurizer
from recsys.text.documents import item_documents
from recsys.training.examples import user_sequences
from recsys.training.train import train_encoder
from recsys.training.validation import held_out, ranking_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MINILM = "packaged:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """A generated catalog whose item text predicts each user's (drifting) tastes."""
    # ~38k interactions over 300 items: enough per item for the towers to learn what text alone
    # does not say (popularity, hidden clusters, drift); 1000 validation users keep noise low
    directory = small_sample(tmp_path_factory.mktemp("sample"), n_users=1000, n_items=300)
    dataset = load_dataset(directory)
    return dataset, split_interactions(dataset.interactions, SplitConfig(n_valid=1, n_test=1))


def _zero_shot_ndcg(features: np.ndarray, valid) -> float:
    items = features / np.linalg.norm(features, axis=1, keepdims=True)
    users = np.stack([
        items[h[-20:]].mean(axis=0) if len(h) else np.zeros(items.shape[1]) for h in valid.histories
    ]).astype(np.float32)  # fmt: skip
    return ranking_metrics(users, items.astype(np.float32), valid)["ndcg"]


def test_trained_towers_beat_zero_shot_minilm(catalog, tmp_path):
    dataset, split = catalog
    config = EncoderConfig(
        model_name_or_path=MINILM, device="cpu", path="frozen", dim=64, epochs=6, patience=6,
        lr=3e-3, history_len=30,
    )  # fmt: skip
    texts = item_documents(dataset, TextConfig())
    features = Featurizer(MINILM, config.max_length, 64, cache_dir=tmp_path / "cache")(texts)
    valid = held_out(user_sequences(split.train, dataset.n_users), split.valid)
    zero_shot = _zero_shot_ndcg(features, valid)
    result = train_encoder(dataset, split, config, TextConfig(), tmp_path / "enc",
                           progress=False, cache_dir=tmp_path / "cache")  # fmt: skip
    ndcg = [h["valid_ndcg"] for h in result.history]
    assert ndcg[-1] > ndcg[0] or result.best_epoch > 0  # validation rose while training
    assert max(ndcg) > zero_shot, f"trained {ndcg} vs zero-shot {zero_shot:.4f}"


def test_training_is_recorded_in_mlflow(catalog, tmp_path, tiny_bert_dir):
    from recsys import tracking

    dataset, split = catalog
    config = EncoderConfig(model_name_or_path=tiny_bert_dir, device="cpu", dim=16, seq_heads=2,
                           epochs=2, history_len=10, max_length=16)  # fmt: skip
    with tracking.start_run("encoder-test", "train-encoder") as tracker:
        train_encoder(dataset, split, config, TextConfig(), tmp_path / "enc", tracker=tracker,
                      progress=False)  # fmt: skip
    client = tracking.client()
    run = client.get_run(tracker.run_id)
    assert run.data.params["encoder.training_path"] == "frozen"
    assert len(run.data.params["encoder.config_hash"]) == 16
    history = client.get_metric_history(tracker.run_id, "encoder_valid_ndcg")
    assert [m.step for m in history] == [0, 1]
    artifacts = [a.path for a in client.list_artifacts(tracker.run_id, "encoder")]
    assert "encoder/encoder.json" in artifacts and "encoder/towers.safetensors" in artifacts
