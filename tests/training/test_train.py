"""Training: every path on the tiny BERT, learning the known-answer world, kill-and-resume."""

import json

import numpy as np
import pytest
import torch
from encoder_world import encoder_config, saved_encoder_ndcg
from safetensors.torch import load_file

from recsys.config import EncoderConfig, TextConfig
from recsys.encoder.backbone import load_backbone, model_hash
from recsys.encoder.model import TwoTowerEncoder
from recsys.text.documents import item_documents, profile_texts
from recsys.tracking import NullTracker
from recsys.training.checkpoint import CheckpointError
from recsys.training.examples import user_sequences
from recsys.training.setup import build_trainer, prepare_data, resolve_plan
from recsys.training.train import CHECKPOINT, train_encoder
from recsys.training.validation import held_out


def _config(bert: str, **overrides) -> EncoderConfig:
    base = dict(batch_size=16, seq_batch_size=8, epochs=3, patience=5)
    return encoder_config(bert, **{**base, **overrides})


def _train(world, config, out, **kw):
    dataset, split = world
    return train_encoder(dataset, split, config, TextConfig(), out, progress=False, **kw)


def _chance_ndcg(valid, n_items: int, k: int = 10) -> float:
    """Expected NDCG@k of a random ranking: one held-out item among the unseen ones."""
    out = []
    for history in valid.histories:
        n = n_items - len(set(history.tolist()))
        out.append(sum(1.0 / n / np.log2(r + 1) for r in range(1, min(k, n) + 1)))
    return float(np.mean(out))


def test_frozen_path_learns_the_world_and_logs(world, tiny_bert_dir, tmp_path):
    tracker = NullTracker()
    config = _config(tiny_bert_dir, epochs=12, patience=12, lr=5e-3, dropout=0.0, seq_batch_size=4)
    result = _train(world, config, tmp_path / "enc", tracker=tracker)
    ndcg = [h["valid_ndcg"] for h in result.history]
    assert result.plan.path == "frozen" and result.plan.softmax == "full"
    assert result.best_epoch == int(np.argmax(ndcg))
    dataset, split = world
    valid = held_out(user_sequences(split.train, dataset.n_users), split.valid)
    # users stay in their topic, in a fixed order: learnable well above chance
    assert max(ndcg) > 2 * _chance_ndcg(valid, dataset.n_items)
    assert tracker.params["encoder.training_path"] == "frozen"
    assert [step for step, _ in tracker.metrics["encoder_valid_ndcg"]] == list(range(len(ndcg)))
    assert tracker.artifacts == [str(tmp_path / "enc")]
    assert result.examples_per_second > 0 and result.device == "cpu"
    assert not (tmp_path / "enc" / "checkpoint").exists()  # removed once complete
    # the saved encoder scores like the best epoch did
    assert saved_encoder_ndcg(result.path, world) == pytest.approx(max(ndcg), abs=1e-4)


@pytest.mark.parametrize(
    "path_settings", [{"path": "full"}, {"trainable_layers": 1}], ids=["full", "top_layers"]
)
def test_bert_training_paths_validate_the_encoder_they_save(
    world, tiny_bert_dir, tmp_path, path_settings
):
    """Validation after an epoch scores users and items under the epoch's final BERT, as the
    saved encoder does; early stopping picks the epoch that serves best (the user tower once read
    history items from the epoch's starting snapshot)."""
    config = _config(tiny_bert_dir, epochs=2, bert_lr=1e-3, id_vectors_min_count=0, **path_settings)
    result = _train(world, config, tmp_path / "enc")
    ndcg = [h["valid_ndcg"] for h in result.history]
    assert saved_encoder_ndcg(result.path, world) == pytest.approx(max(ndcg), abs=1e-4)


def test_frozen_encoder_reads_item_features_training_cached(world, tiny_bert_dir, tmp_path):
    cache = tmp_path / "features"
    result = _train(world, _config(tiny_bert_dir, epochs=1), tmp_path / "enc", cache_dir=cache)
    texts = item_documents(world[0], TextConfig())
    loaded = TwoTowerEncoder.load(result.path)
    cached = loaded.encode_items(texts, feature_cache=cache)
    assert loaded._bert is None  # BERT never loaded: every text was in the cache
    np.testing.assert_allclose(cached, loaded.encode_items(texts), atol=1e-5)
    new = loaded.encode_items([*texts[:2], "an item training never saw"], feature_cache=cache)
    np.testing.assert_allclose(new, loaded.encode_items([*texts[:2], "an item training never saw"]),
                               atol=1e-5)  # fmt: skip


def test_full_path_fine_tunes_bert(world, tiny_bert_dir, tmp_path):
    result = _train(world, _config(tiny_bert_dir, path="full", bert_lr=1e-3), tmp_path / "e")
    assert result.plan == type(result.plan)("full", "sequence", "sampled")
    saved = tmp_path / "e" / "bert"
    assert (saved / "model.safetensors").is_file()
    meta = json.loads((tmp_path / "e" / "encoder.json").read_text())
    assert meta["backbone"] == {"name": "bert", "hash": model_hash(saved)}
    assert meta["backbone"]["hash"] != model_hash(tiny_bert_dir)  # BERT itself trained
    loaded = TwoTowerEncoder.load(tmp_path / "e")
    texts = item_documents(world[0], TextConfig())
    np.testing.assert_allclose(loaded.encode_items(texts), result.encoder.encode_items(texts),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_bert_user_tower_reads_user_documents(world, tiny_bert_dir, tmp_path):
    config = _config(tiny_bert_dir, path="full", user_tower="bert", epochs=2)
    result = _train(world, config, tmp_path / "e")
    loaded = TwoTowerEncoder.load(tmp_path / "e")
    assert loaded.user_tower_kind == "bert" and loaded.item_titles is not None
    items = loaded.encode_items(item_documents(world[0], TextConfig()))
    users = loaded.encode_users([np.array([0, 1]), np.array([], np.int64)], items,
                                [None, "a fan of jazz"])  # fmt: skip
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0, rtol=1e-5)
    assert len(result.history) == 2
    grown = np.vstack([items, items[:1]])  # a new item the saved titles do not cover
    with pytest.raises(ValueError, match="has no title"):
        loaded.encode_users([np.array([len(items)])], grown)


def test_user_tower_reads_the_same_document_in_training_and_serving(world, tiny_bert_dir, tmp_path):
    """The BERT user tower's document for a (user, position) in training is the document the
    saved encoder writes when serving that user's history up to the position (recsys.text)."""
    dataset, split = world
    config = _config(tiny_bert_dir, path="full", user_tower="bert", epochs=1, history_len=3)
    _train(world, config, tmp_path / "e")
    served = TwoTowerEncoder.load(tmp_path / "e")
    plan = resolve_plan(config, "cpu", dataset.n_items)
    data = prepare_data(dataset, split, config, TextConfig(), plan, None, "cpu", False)
    trainer = build_trainer(data, config, plan, "cpu", None)
    users, positions = trainer.users[::5], trainer.positions[::5]  # a spread of training pairs
    in_training = trainer.user_documents(users, trainer.histories(users, positions))
    profiles = profile_texts(dataset)
    when_serving = served.user_documents(
        [data.sequences[u][:p] for u, p in zip(users, positions, strict=True)],
        [profiles[u] for u in users],
    )
    assert in_training == when_serving
    assert any(doc.startswith("a fan of") and "Recent: the" in doc for doc in in_training)
    assert any(doc.startswith("Recent: the") for doc in in_training)


def test_trainable_layers_train_only_the_top_of_bert(world, tiny_bert_dir, tmp_path):
    config = _config(tiny_bert_dir, trainable_layers=1, bert_lr=1e-3, epochs=2)
    result = _train(world, config, tmp_path / "e")
    assert result.plan.path == "frozen" and result.plan.softmax == "sampled"
    _, base = load_backbone(tiny_bert_dir)
    tuned = load_file(str(tmp_path / "e" / "bert" / "model.safetensors"))
    base_state = base.state_dict()
    changed = {k for k, v in tuned.items() if not torch.equal(v, base_state[k])}
    assert changed and all(k.startswith("encoder.layer.1.") for k in changed)


def _run_with_crash(world, config, out, crash_after: int):
    def crash(epoch, record):
        if epoch == crash_after:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        _train(world, config, out, on_epoch_end=crash)
    assert (out / CHECKPOINT).is_file()
    return _train(world, config, out, resume=True)


@pytest.mark.parametrize("path", ["frozen", "full"])
def test_kill_and_resume_gives_the_uninterrupted_weights(world, tiny_bert_dir, tmp_path, path):
    config = _config(tiny_bert_dir, path=path, epochs=3, patience=10, bert_lr=1e-3)
    straight = _train(world, config, tmp_path / "straight")
    resumed = _run_with_crash(world, config, tmp_path / "resumed", crash_after=1)
    assert resumed.encoder.encoder_hash == straight.encoder.encoder_hash
    assert [h["valid_ndcg"] for h in resumed.history] == [h["valid_ndcg"] for h in straight.history]
    a = load_file(str(tmp_path / "straight" / "towers.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "towers.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_checkpoint_of_another_config(world, tiny_bert_dir, tmp_path):
    config = _config(tiny_bert_dir, epochs=3)

    def crash(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(world, config, tmp_path / "e", on_epoch_end=crash)
    with pytest.raises(CheckpointError, match="resume=False"):
        _train(world, _config(tiny_bert_dir, epochs=3, lr=0.01), tmp_path / "e", resume=True)


def test_early_stopping_and_time_cap(world, tiny_bert_dir, tmp_path):
    capped = _train(world, _config(tiny_bert_dir, epochs=50, max_minutes=1e-6), tmp_path / "a")
    assert len(capped.history) == 1
    patient = _train(world, _config(tiny_bert_dir, epochs=50, patience=1, lr=1e-6), tmp_path / "b")
    assert len(patient.history) < 50
    assert patient.best_epoch == len(patient.history) - 2  # one epoch without improvement


def test_impossible_plans_are_clear_errors(world, tiny_bert_dir, tmp_path):
    with pytest.raises(ValueError, match="needs encoder.path = 'full'"):
        _train(world, _config(tiny_bert_dir, user_tower="bert"), tmp_path / "a")
    with pytest.raises(ValueError, match="softmax = 'sampled'"):
        _train(world, _config(tiny_bert_dir, path="full", softmax="full"), tmp_path / "b")


def test_without_validation_users_every_epoch_trains(world, tiny_bert_dir, tmp_path):
    dataset, split = world
    no_valid = type(split)(split.train, split.valid.clear(), split.test)
    config = _config(tiny_bert_dir, epochs=3, patience=1)
    result = train_encoder(dataset, no_valid, config, TextConfig(), tmp_path / "e", progress=False)
    assert len(result.history) == 3 and result.best_epoch == 2


def test_hard_negatives_are_mined_for_each_batch(world, tiny_bert_dir, tmp_path):
    dataset, split = world
    popular = np.bincount(split.train["item_idx"].to_numpy(), minlength=dataset.n_items)
    top = np.argsort(-popular)[:3]
    calls = []

    def mine(users: np.ndarray) -> np.ndarray:  # a stand-in miner: the 3 most popular items
        calls.append(users.copy())
        return np.tile(top, (len(users), 1))

    config = _config(tiny_bert_dir, path="full", epochs=1, hard_negatives=2)
    _train(world, config, tmp_path / "e", hard_negatives=mine)
    assert calls and all(c.ndim == 1 and 0 < len(c) <= config.batch_size for c in calls)
    assert sum(len(c) for c in calls) == split.train.height - dataset.n_users // 2
