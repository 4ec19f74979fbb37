"""Id vectors beside the text item tower (encoder.id_vectors_min_count, issue 15): items with
enough training interactions get a learned vector added to their text vector; the encoder saves
the table keyed by item id, and everything that embeds items (the nightly's embed step, the live
item writes) adds it again by id."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from encoder_world import encoder_config, saved_encoder_ndcg
from support import build_tiny_bert, fast_config, small_sample

from recsys import bundle
from recsys.config import EncoderConfig, TextConfig
from recsys.data.loaders import load_dataset
from recsys.encoder.model import EncoderLoadError, TwoTowerEncoder
from recsys.encoder.towers import IdVectors
from recsys.pipeline.nightly import run_nightly
from recsys.ranking.model import RecommenderModel
from recsys.schema import ITEM_IDX
from recsys.text.documents import item_documents
from recsys.training.train import continue_training, train_encoder


def _config(bert: str, **overrides) -> EncoderConfig:
    base = dict(seq_batch_size=4, epochs=4, patience=4, lr=5e-3, dropout=0.0)
    return encoder_config(bert, **{**base, **overrides})


def _train_counts(world) -> np.ndarray:
    dataset, split = world
    return np.bincount(split.train[ITEM_IDX].to_numpy(), minlength=dataset.n_items)


def test_id_vectors_start_at_the_text_vector_and_skip_rows_without_one():
    ids = IdVectors(3, 4)
    text = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    rows = torch.tensor([0, -1, 2, -1, 1])
    torch.testing.assert_close(ids(text, rows), text)  # zero table: the text tower alone
    with torch.no_grad():
        ids.table.copy_(torch.randn(3, 4))
    out = ids(text, rows)
    torch.testing.assert_close(out[rows < 0], text[rows < 0])
    assert not torch.allclose(out[rows >= 0], text[rows >= 0])
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))


@pytest.fixture(scope="module")
def trained(world, tiny_bert_dir, tmp_path_factory):
    counts = _train_counts(world)
    threshold = int(np.median(counts)) + 1  # some items above, some below
    config = _config(tiny_bert_dir, id_vectors_min_count=threshold)
    dataset, split = world
    out = tmp_path_factory.mktemp("ids") / "enc"
    result = train_encoder(dataset, split, config, TextConfig(), out, progress=False)
    return {"result": result, "threshold": threshold, "counts": counts}


def test_items_seen_often_enough_get_a_learned_id_vector(world, trained):
    dataset, _ = world
    encoder = trained["result"].encoder
    ids = dataset.item_map.ids
    chosen = np.flatnonzero(trained["counts"] >= trained["threshold"])
    assert 0 < chosen.size < dataset.n_items
    assert encoder.id_vocab == [ids[i] for i in chosen]  # item_idx order
    assert json.loads((trained["result"].path / "item_ids.json").read_text()) == encoder.id_vocab

    loaded = TwoTowerEncoder.load(trained["result"].path)
    text = loaded.encode_items(item_documents(dataset, TextConfig()))
    items = loaded.with_id_vectors(text, ids)
    others = np.setdiff1d(np.arange(dataset.n_items), chosen)
    np.testing.assert_allclose(items[others], text[others], atol=1e-6)  # text only below it
    moved = np.abs(items[chosen] - text[chosen]).max(axis=1)
    assert (moved > 1e-3).all()  # training moved every chosen item's id vector off zero
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    # keyed by item id, not by position: another catalog order gives each item the same vector
    order = np.random.default_rng(0).permutation(dataset.n_items)
    shuffled = loaded.with_id_vectors(text[order], [ids[i] for i in order])
    np.testing.assert_allclose(shuffled, items[order], atol=1e-6)


def test_the_saved_encoder_with_its_id_vectors_scores_as_the_best_epoch(world, trained):
    """Validation in training scored the item vectors the embed step rebuilds from text + id."""
    result = trained["result"]
    best = max(h["valid_ndcg"] for h in result.history)
    assert saved_encoder_ndcg(result.path, world) == pytest.approx(best, abs=1e-4)


def test_the_encoder_hash_covers_the_item_ids(trained, tmp_path):
    encoder = trained["result"].encoder
    encoder.save(tmp_path / "enc")
    path = tmp_path / "enc" / "item_ids.json"
    vocab = json.loads(path.read_text())
    path.write_text(json.dumps([vocab[1], vocab[0], *vocab[2:]]))  # two rows swapped
    with pytest.raises(EncoderLoadError, match="does not match encoder_hash"):
        TwoTowerEncoder.load(tmp_path / "enc")


def test_without_id_vectors_the_encoder_is_text_only(world, tiny_bert_dir, tmp_path):
    dataset, split = world
    config = _config(tiny_bert_dir, epochs=1, id_vectors_min_count=0)
    result = train_encoder(dataset, split, config, TextConfig(), tmp_path / "enc", progress=False)
    assert result.encoder.ids is None and result.encoder.id_vocab is None
    assert not (tmp_path / "enc" / "item_ids.json").exists()
    text = np.random.default_rng(1).normal(size=(dataset.n_items, 16)).astype(np.float32)
    np.testing.assert_array_equal(result.encoder.with_id_vectors(text, dataset.item_map.ids), text)
    with pytest.raises(ValueError, match="item_ids: expected 3, found 2"):
        result.encoder.with_id_vectors(text[:3], ["a", "b"])


def test_refit_towers_keep_the_evaluated_id_rows(world, trained, tmp_path):
    """continue_training (the published towers) trains the same table rows: an item first seen
    often enough in the newest interactions stays text-only, as the served catalog treats it."""
    dataset, _ = world
    encoder = trained["result"].encoder
    refit = continue_training(
        encoder, dataset, dataset.interactions, TextConfig(), 1, tmp_path / "refit"
    )
    assert refit.encoder.id_vocab == encoder.id_vocab
    before = encoder.ids.table.detach().cpu().numpy()
    after = refit.encoder.ids.table.detach().cpu().numpy()
    assert before.shape == after.shape and not np.allclose(before, after)


@pytest.mark.slow
def test_the_nightly_publishes_item_vectors_with_their_id_vectors(tmp_path):
    bert = build_tiny_bert(tmp_path / "bert")
    data = small_sample(tmp_path / "data", seed=5, n_users=120, n_items=150)
    config = fast_config(
        bert,
        encoder={"id_vectors_min_count": 3},
        blend={"sources": ["text", "popularity"]},
        gate={"min_users": 1, "floors": {}},
    )
    work = tmp_path / "work"
    result = run_nightly(data, config, work, say=lambda m: None, track=False, progress=False)
    published = bundle.bundles_dir(work) / result.published
    model = RecommenderModel.load(published)
    encoder = TwoTowerEncoder.load(published / "encoder")
    dataset = load_dataset(data, config.data)
    assert encoder.id_vocab and len(encoder.id_vocab) < dataset.n_items
    text = encoder.encode_items(item_documents(dataset, config.text))
    ids = dataset.item_map.ids
    expected = encoder.with_id_vectors(text, ids)
    served = model.ranker.sources["text"].item_vectors
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert not np.allclose(served, text, atol=1e-3)  # the id vectors are in what is served


@pytest.mark.parametrize(
    "path_settings", [{"path": "full"}, {"trainable_layers": 1}], ids=["full", "top_layers"]
)
def test_the_bert_training_paths_train_id_vectors_too(
    world, tiny_bert_dir, tmp_path, path_settings
):
    """PairTrainer (BERT fine-tuned on the GPU path, or its top layers on the CPU) trains the
    same id vectors on its batches' items; the saved encoder, its BERT and its id vectors score
    the best epoch's validation NDCG, as on the frozen path."""
    dataset, split = world
    counts = _train_counts(world)
    threshold = int(np.median(counts)) + 1  # some items above, some below
    config = _config(
        tiny_bert_dir, epochs=2, bert_lr=1e-3, id_vectors_min_count=threshold, **path_settings
    )
    result = train_encoder(dataset, split, config, TextConfig(), tmp_path / "enc", progress=False)
    assert result.plan.path == path_settings.get("path", "frozen")
    chosen = np.flatnonzero(counts >= threshold)
    assert result.encoder.id_vocab == [dataset.item_map.ids[i] for i in chosen]
    loaded = TwoTowerEncoder.load(result.path)
    text = loaded.encode_items(item_documents(dataset, TextConfig()))
    items = loaded.with_id_vectors(text, dataset.item_map.ids)
    assert (np.abs(items[chosen] - text[chosen]).max(axis=1) > 1e-4).all()
    best = max(h["valid_ndcg"] for h in result.history)
    assert saved_encoder_ndcg(result.path, world) == pytest.approx(best, abs=1e-4)
